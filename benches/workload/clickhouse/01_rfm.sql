-- RFM: each buyer scored 1-5 on recency, frequency and monetary value; profiles per cell.
WITH per AS (
  SELECT profile_id, max(ordered_at) AS last_order, count(*) AS frequency, sum(amount) AS monetary
  FROM orders WHERE profile_id IS NOT NULL GROUP BY profile_id
), scored AS (
  SELECT ntile(5) OVER (ORDER BY last_order, profile_id) AS r,
         ntile(5) OVER (ORDER BY frequency, profile_id) AS f,
         ntile(5) OVER (ORDER BY monetary, profile_id) AS m
  FROM per
)
SELECT r, f, m, count(*) AS profiles FROM scored GROUP BY r, f, m ORDER BY r, f, m
