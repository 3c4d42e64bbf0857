-- Recent buyers who may receive email marketing (the latest consent decision).
SELECT count(*) AS consenting FROM segment('recent_buyers', purpose => 'email_marketing')
