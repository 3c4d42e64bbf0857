-- Profiles who bought in the last 30 days (the data ends on 2025-12-31).
SELECT count(DISTINCT profile_id) AS recent_buyers
FROM orders WHERE ordered_at >= TIMESTAMP '2025-12-02' AND profile_id IS NOT NULL
