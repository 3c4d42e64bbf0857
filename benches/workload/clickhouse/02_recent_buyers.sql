-- Profiles who bought in the last 30 days (the data ends on 2025-12-31).
SELECT count(DISTINCT profile_id) AS recent_buyers
FROM orders WHERE ordered_at >= toDateTime64('2025-12-02 00:00:00', 6, 'UTC') AND profile_id IS NOT NULL
