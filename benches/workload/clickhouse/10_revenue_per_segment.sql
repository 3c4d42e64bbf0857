-- Revenue of each segment's members.
SELECT * FROM (
SELECT 'recent_buyers' AS segment, round(sum(amount), 2) AS revenue FROM orders WHERE profile_id IN (SELECT profile_id FROM recent_buyers)
UNION ALL
SELECT 'high_value', round(sum(amount), 2) FROM orders WHERE profile_id IN (SELECT profile_id FROM high_value)
UNION ALL
SELECT 'web_active', round(sum(amount), 2) FROM orders WHERE profile_id IN (SELECT profile_id FROM web_active)
UNION ALL
SELECT 'win_back', round(sum(amount), 2) FROM orders WHERE profile_id IN (SELECT profile_id FROM win_back)
)
ORDER BY segment
