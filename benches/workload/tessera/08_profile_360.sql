-- The 360° view of one person found by an email address: their records in every source.
WITH p AS (SELECT unify('email', '{email}') AS id)
SELECT (SELECT count(*) FROM crm_contacts c, p WHERE c.profile_id = p.id) AS crm,
       (SELECT count(*) FROM orders o, p WHERE o.profile_id = p.id) AS orders,
       (SELECT round(sum(amount), 2) FROM orders o, p WHERE o.profile_id = p.id) AS revenue,
       (SELECT count(*) FROM web_events e, p WHERE e.profile_id = p.id) AS web_events,
       (SELECT count(*) FROM support_tickets t, p WHERE t.profile_id = p.id) AS tickets
