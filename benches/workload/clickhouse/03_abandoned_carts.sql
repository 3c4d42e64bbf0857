-- Abandoned carts in December: an add_to_cart with no order by the same profile within 24 hours.
SELECT count(DISTINCT e.profile_id) AS abandoned
FROM web_events e
WHERE e.event_type = 'add_to_cart' AND e.profile_id IS NOT NULL
  AND e.ts >= toDateTime64('2025-12-01 00:00:00', 6, 'UTC')
  AND NOT EXISTS (
    SELECT 1 FROM orders o
    WHERE o.profile_id = e.profile_id
      AND o.ordered_at >= e.ts AND o.ordered_at < e.ts + INTERVAL '24 hours')
