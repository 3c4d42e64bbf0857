-- After loading: identity resolution over every source, and the consent record.
UNIFY customers
  FROM crm_contacts (customer_id, email, phone),
       orders (customer_id, email, phone),
       web_events (device_id = anonymous_id, email = user_email),
       support_tickets (email, phone),
       consents (email)
  WITH (phone.region = 'FR', customer_id.limit = 1, email.limit = 3);
ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted, ts);
