//! The workload `tessera bench` runs: the statements and the ten typical
//! customer-data queries, one file each under `benches/workload/tessera/`
//! (the same logical queries for the other engines sit beside them), built
//! into the binary so the command runs anywhere.

/// Statements run once after loading: UNIFY over every source and the
/// space's consent record.
pub const SETUP_UNIFY: &str = include_str!("../../../benches/workload/tessera/setup_unify.sql");

/// The typical segments, created (and first refreshed) after UNIFY.
pub const SETUP_SEGMENTS: &str =
    include_str!("../../../benches/workload/tessera/setup_segments.sql");

/// A set expression over those segments, counted on the bitmaps.
pub const SEGMENT_COUNT: &str =
    "SELECT segment_count('high_value & !recent_buyers | web_active') AS profiles";

/// A bitmap probe per row of a scan.
pub const IN_SEGMENT: &str = "SELECT count(*) AS orders, round(sum(amount), 2) AS revenue \
     FROM orders WHERE in_segment(profile_id, 'high_value')";

/// Finds the email address the 360° query looks up: the (normalised)
/// address of the person with the most records, among those identity
/// resolution kept (junk addresses shared by many people are not).
pub const PICK_EMAIL: &str = "SELECT value FROM customers_identifiers WHERE kind = 'email' \
     ORDER BY records DESC, value LIMIT 1";

/// The ten queries: (name, SQL). `{email}` is replaced by [`PICK_EMAIL`]'s answer.
pub const QUERIES: [(&str, &str); 10] = [
    (
        "rfm",
        include_str!("../../../benches/workload/tessera/01_rfm.sql"),
    ),
    (
        "recent_buyers",
        include_str!("../../../benches/workload/tessera/02_recent_buyers.sql"),
    ),
    (
        "abandoned_carts",
        include_str!("../../../benches/workload/tessera/03_abandoned_carts.sql"),
    ),
    (
        "top_decile_ltv",
        include_str!("../../../benches/workload/tessera/04_top_decile_ltv.sql"),
    ),
    (
        "segment_overlap",
        include_str!("../../../benches/workload/tessera/05_segment_overlap.sql"),
    ),
    (
        "events_per_channel_day",
        include_str!("../../../benches/workload/tessera/06_events_per_channel_day.sql"),
    ),
    (
        "daily_active_profiles",
        include_str!("../../../benches/workload/tessera/07_daily_active_profiles.sql"),
    ),
    (
        "profile_360",
        include_str!("../../../benches/workload/tessera/08_profile_360.sql"),
    ),
    (
        "consented_members",
        include_str!("../../../benches/workload/tessera/09_consented_members.sql"),
    ),
    (
        "revenue_per_segment",
        include_str!("../../../benches/workload/tessera/10_revenue_per_segment.sql"),
    ),
];

/// The source tables loaded, in load order.
pub const SOURCES: [&str; 5] = [
    "crm_contacts",
    "orders",
    "web_events",
    "support_tickets",
    "consents",
];
