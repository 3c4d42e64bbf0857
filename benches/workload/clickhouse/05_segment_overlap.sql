-- How many recent buyers are also high-value customers (the segments' definitions intersected).
SELECT count(*) AS overlap FROM (SELECT profile_id FROM recent_buyers INTERSECT SELECT profile_id FROM high_value)
