-- Customer events per channel per day, across sources.
SELECT channel, day, count(*) AS events FROM (
  SELECT 'web' AS channel, date_trunc('day', ts) AS day FROM web_events
  UNION ALL SELECT 'order:' || channel, date_trunc('day', ordered_at) FROM orders
  UNION ALL SELECT 'support', date_trunc('day', created_at) FROM support_tickets
) x
GROUP BY channel, day ORDER BY channel, day
