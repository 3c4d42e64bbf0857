-- The typical segments the workload refreshes and queries.
CREATE SEGMENT recent_buyers ON customers AS
  SELECT profile_id FROM orders WHERE ordered_at >= TIMESTAMP '2025-12-02';
CREATE SEGMENT high_value ON customers AS
  SELECT profile_id FROM orders GROUP BY profile_id HAVING sum(amount) >= 500;
CREATE SEGMENT web_active ON customers AS
  SELECT profile_id FROM web_events WHERE ts >= TIMESTAMP '2025-12-02';
CREATE SEGMENT win_back ON customers AS SEGMENT high_value AND NOT SEGMENT recent_buyers;
