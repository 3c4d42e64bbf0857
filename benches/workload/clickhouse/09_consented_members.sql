-- Recent buyers whose latest email-marketing decision is a grant (a withdrawal wins a tie).
WITH latest AS (
  SELECT profile_id, argMax(granted, (ts, NOT granted)) AS granted
  FROM consents WHERE purpose = 'email_marketing' AND profile_id IS NOT NULL
  GROUP BY profile_id
)
SELECT count(*) AS consenting FROM recent_buyers r JOIN latest l USING (profile_id) WHERE l.granted
