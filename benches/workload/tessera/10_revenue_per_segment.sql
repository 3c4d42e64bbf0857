-- Revenue of each segment's members.
SELECT 'recent_buyers' AS segment, round(sum(amount), 2) AS revenue FROM orders WHERE in_segment(profile_id, 'recent_buyers')
UNION ALL
SELECT 'high_value', round(sum(amount), 2) FROM orders WHERE in_segment(profile_id, 'high_value')
UNION ALL
SELECT 'web_active', round(sum(amount), 2) FROM orders WHERE in_segment(profile_id, 'web_active')
UNION ALL
SELECT 'win_back', round(sum(amount), 2) FROM orders WHERE in_segment(profile_id, 'win_back')
ORDER BY segment
