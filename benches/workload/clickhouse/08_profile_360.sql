-- The 360° view of one person found by an email address, through the identifiers UNIFY resolved.
WITH p AS (SELECT profile_id AS id FROM customers_identifiers WHERE kind = 'email' AND value = '{email}')
SELECT (SELECT count(*) FROM crm_contacts c, p WHERE c.profile_id = p.id) AS crm,
       (SELECT count(*) FROM orders o, p WHERE o.profile_id = p.id) AS orders,
       (SELECT round(sum(amount), 2) FROM orders o, p WHERE o.profile_id = p.id) AS revenue,
       (SELECT count(*) FROM web_events e, p WHERE e.profile_id = p.id) AS web_events,
       (SELECT count(*) FROM support_tickets t, p WHERE t.profile_id = p.id) AS tickets
