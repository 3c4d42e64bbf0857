-- The top decile of buyers by lifetime value.
WITH ltv AS (
  SELECT profile_id, sum(amount) AS ltv FROM orders WHERE profile_id IS NOT NULL GROUP BY profile_id
), d AS (
  SELECT profile_id, ltv, ntile(10) OVER (ORDER BY ltv DESC, profile_id) AS decile FROM ltv
)
SELECT count(*) AS profiles, round(sum(ltv), 2) AS revenue, round(min(ltv), 2) AS threshold
FROM d WHERE decile = 1
