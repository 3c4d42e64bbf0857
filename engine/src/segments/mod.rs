//! `SEGMENT`: audiences over a profile space, kept as roaring bitmaps of
//! profile ids.
//!
//! ## A segment, from definition to bitmap
//!
//! 1. `CREATE SEGMENT name ON space AS …` is checked ([`Segments::create`]):
//!    the space exists, the name is free, a set of segments names segments
//!    of the same space and makes no cycle, a query returns profile ids.
//! 2. Its members are computed ([`Segments::refresh`]): a query runs through the SQL
//!    layer and its first column becomes a [`RoaringBitmap`]; a set
//!    combines the bitmaps of the segments it names.
//! 3. The bitmap is stored, portable-serialised, as a new *version* in the
//!    space's table `<space>$segments` (one row per refresh), in the same
//!    publication as the definition (kept in the catalog).
//! 4. Reads (`in_segment`, `segment_count`, …) use the latest version,
//!    mapped through the space's merges: a member that merged into another
//!    profile counts as that profile.
//!
//! Refresh policies: `MANUAL` (`REFRESH SEGMENT`), `ON COMMIT` (after every
//! statement that wrote to a source of the space, before it returns),
//! `EVERY 'interval'` (checked before each statement; see [`Segments::due`]).

pub mod dense;
pub mod expr;
pub mod incremental;
pub mod scheduler;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use tessera_sql::SqlEngine;
use tessera_sql::SqlError;
use tessera_sql::datafusion::arrow::array::{Array, AsArray, RecordBatch};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Int64Type};
use tessera_sql::parser::{
    AlterSegment, AlterSegmentChange, CreateSegment, RefreshPolicy, SegmentBody,
};

use crate::error::{EngineError, Result};
use crate::space::Space;
use crate::spaces::Spaces;
use expr::SetExpr;
pub use store::{Seen, Version};

/// Prefix of the catalog keys of segment definitions.
const KEY_PREFIX: &str = "segment:";
/// Format of a stored definition (its first field).
const DEF_FORMAT: u32 = 1;

/// A segment's definition, as kept in the catalog.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentDef {
    /// Its name.
    pub name: String,
    /// The storage name of its space's profile table (`public.customers`).
    pub space: String,
    /// `MANUAL`, `ON COMMIT` or `EVERY 'interval'`, as text.
    pub refresh: String,
    /// Seconds between refreshes, for `EVERY`.
    pub every_seconds: Option<u64>,
    /// The defining query or set, as SQL text.
    pub body: String,
    /// Whether the body is a set of segments (else a query).
    pub is_set: bool,
    /// The segments a set names.
    pub depends_on: Vec<String>,
}

impl SegmentDef {
    /// Its refresh policy.
    pub fn policy(&self) -> RefreshPolicy {
        match (self.refresh.as_str(), self.every_seconds) {
            ("ON COMMIT", _) => RefreshPolicy::OnCommit,
            (_, Some(_)) => RefreshPolicy::Every(self.refresh.clone()),
            _ => RefreshPolicy::Manual,
        }
    }
}

/// What a mapping of members was computed for: (the space object's
/// address, the merges it had committed).
type MappedFor = (usize, usize, u64);

/// A segment at run time: its definition and latest version.
#[derive(Debug)]
pub struct Segment {
    /// Its definition.
    pub def: SegmentDef,
    /// Its latest version (members as of that refresh).
    pub latest: Version,
    /// The latest members mapped through the space's merges, for (which
    /// space object, how many merges it had committed).
    mapped: Mutex<Option<(MappedFor, Arc<RoaringBitmap>)>>,
    /// The same members as a bitset, for counting expressions.
    bits: Mutex<Option<(MappedFor, Arc<dense::Bits>)>>,
    /// How the latest version was computed in this process (`None`: it was
    /// read at open).
    pub kind: Option<RefreshKind>,
    /// When the members were last computed in full (microseconds since the
    /// Unix epoch).
    pub full_at: i64,
    /// Whether the definition reads the clock (known once it was refreshed
    /// incrementally).
    reads_clock: bool,
    /// Why the last refresh by the scheduler failed, if it did.
    pub last_error: Mutex<Option<String>>,
}

/// How a version was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshKind {
    /// By running the definition over every row.
    Full,
    /// From the rows appended since the version before
    /// ([`incremental`]).
    Incremental,
}

impl RefreshKind {
    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshKind::Full => "full",
            RefreshKind::Incremental => "incremental",
        }
    }
}

impl Segment {
    fn new(def: SegmentDef, latest: Version) -> Self {
        Self {
            def,
            full_at: latest.refreshed_at,
            latest,
            mapped: Mutex::new(None),
            bits: Mutex::new(None),
            kind: None,
            reads_clock: false,
            last_error: Mutex::new(None),
        }
    }

    /// A segment whose new version `latest` was computed in full.
    fn computed(def: SegmentDef, latest: Version, reads_clock: bool) -> Self {
        Self {
            kind: Some(RefreshKind::Full),
            reads_clock,
            ..Self::new(def, latest)
        }
    }

    /// When the scheduler should refresh it next (microseconds since the
    /// Unix epoch), if ever: an `EVERY` segment its interval after its
    /// latest version; a clock-reading `ON COMMIT` segment refreshed
    /// incrementally [`incremental::CLOCK_FULL_REFRESH`] after its last
    /// full computation.
    pub fn next_scheduled(&self) -> Option<i64> {
        match self.def.policy() {
            RefreshPolicy::Every(_) => {
                let secs = i64::try_from(self.def.every_seconds?).ok()?;
                Some(
                    self.latest
                        .refreshed_at
                        .saturating_add(secs.saturating_mul(1_000_000)),
                )
            }
            RefreshPolicy::OnCommit
                if self.reads_clock && self.kind == Some(RefreshKind::Incremental) =>
            {
                let window = incremental::CLOCK_FULL_REFRESH.as_micros() as i64;
                Some(self.full_at.saturating_add(window))
            }
            _ => None,
        }
    }

    /// The members now: the latest version mapped through the merges of
    /// `space` since.
    pub fn members(&self, space: &Space) -> Arc<RoaringBitmap> {
        let key = mapped_for(space);
        let mut m = self.mapped.lock();
        if let Some((seen, b)) = &*m
            && *seen == key
        {
            return Arc::clone(b);
        }
        let mapped = Arc::new(as_current(space, &self.latest.members));
        *m = Some((key, Arc::clone(&mapped)));
        mapped
    }
}

/// What mapped members are computed for: the space object (a re-run
/// UNIFY replaces it: its merges are new), its merges and its erasures.
fn mapped_for(space: &Space) -> MappedFor {
    (
        std::ptr::from_ref(space) as usize,
        space.merges_committed(),
        space.erasures(),
    )
}

impl Segment {
    /// [`Segment::members`] as a bitset.
    pub fn bits(&self, space: &Space) -> Arc<dense::Bits> {
        let key = mapped_for(space);
        let mut b = self.bits.lock();
        if let Some((seen, bits)) = &*b
            && *seen == key
        {
            return Arc::clone(bits);
        }
        let bits = Arc::new(dense::Bits::of(&self.members(space)));
        *b = Some((key, Arc::clone(&bits)));
        bits
    }
}

/// Members as the profiles they are now: a member merged into another
/// profile since counts as that profile.
pub fn as_current(space: &Space, members: &RoaringBitmap) -> RoaringBitmap {
    if space.merges_committed() == 0 {
        // An erased person is nobody's member, even in a version computed
        // before the erasure.
        return if space.erasures() == 0 {
            members.clone()
        } else {
            members - space.erased()
        };
    }
    let mut ids: Vec<u32> = members
        .iter()
        .map(|id| u32::try_from(space.current(u64::from(id))).unwrap_or(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut b = RoaringBitmap::from_sorted_iter(ids).unwrap_or_default();
    if space.erasures() > 0 {
        b -= space.erased();
    }
    b.optimize();
    b
}

fn encode_def(def: &SegmentDef) -> Result<Vec<u8>> {
    postcard::to_allocvec(&(DEF_FORMAT, def)).map_err(|e| {
        EngineError::InvalidOption(format!("the segment definition cannot be encoded: {e}"))
    })
}

fn decode_def(key: &str, bytes: &[u8]) -> Result<SegmentDef> {
    let (format, def): (u32, SegmentDef) = postcard::from_bytes(bytes).map_err(|e| {
        EngineError::InvalidOption(format!("the definition {key} cannot be read: {e}"))
    })?;
    if format != DEF_FORMAT {
        return Err(EngineError::Sql(SqlError::Unsupported(format!(
            "segment definition {key} has format {format}"
        ))));
    }
    Ok(def)
}

fn undefined(name: &str) -> EngineError {
    EngineError::UndefinedObject(format!("segment \"{name}\" does not exist"))
}

/// `EVERY` intervals: PostgreSQL-style text (`'15 minutes'`, `'1 hour'`,
/// `'1 day'`) to seconds.
fn interval_seconds(text: &str) -> Result<u64> {
    let bad = || {
        EngineError::InvalidOption(format!(
            "\"{text}\" is not an interval: write a number and a unit, as '15 minutes', '1 hour' or '1 day'"
        ))
    };
    let mut total = 0u64;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(bad());
    }
    for pair in words.chunks(2) {
        let n: u64 = pair[0].parse().map_err(|_| bad())?;
        let unit = match pair[1].to_lowercase().trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86_400,
            "week" => 604_800,
            _ => return Err(bad()),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// The segments of one database.
#[derive(Debug, Default)]
pub struct Segments {
    segments: RwLock<BTreeMap<String, Arc<Segment>>>,
    /// One change (create, alter, drop, refresh) at a time.
    changing: tokio::sync::Mutex<()>,
    /// The background refreshes.
    pub scheduler: scheduler::Scheduler,
    /// The live profiles of the space last counted against, as a bitset.
    universe: Mutex<Option<(MappedFor, Arc<dense::Bits>)>>,
}

impl Segments {
    /// Loads every segment defined in the catalog with its latest version.
    pub fn open(engine: &SqlEngine, spaces: &Spaces) -> Result<Segments> {
        let segments = Segments::default();
        let mut latest: BTreeMap<String, BTreeMap<String, Version>> = BTreeMap::new();
        for (key, bytes) in engine.extensions(KEY_PREFIX) {
            let def = decode_def(&key, &bytes)?;
            let Some(space) = spaces.get(&def.space) else {
                continue;
            };
            if !latest.contains_key(&def.space) {
                latest.insert(def.space.clone(), store::latest(engine.store(), &space)?);
            }
            let mut version = latest
                .get(&def.space)
                .and_then(|m| m.get(&def.name))
                .cloned()
                .unwrap_or_else(Version::empty);
            // A version older than the graph's last change may have missed
            // a write (a crash between the write and its ON COMMIT refresh):
            // such a segment is due; the others are current.
            let stale = space
                .updated_at()
                .is_some_and(|at| version.refreshed_at < at);
            version.writes_seen = Seen {
                writes: if stale { 0 } else { space.writes_committed() },
                ..Seen::now(&space)
            };
            store::protect(engine, &space);
            segments
                .segments
                .write()
                .insert(def.name.clone(), Arc::new(Segment::new(def, version)));
        }
        segments.keep_appends(spaces);
        Ok(segments)
    }

    /// Makes `seg` the current state of its segment.
    fn install(&self, seg: Arc<Segment>) {
        self.segments.write().insert(seg.def.name.clone(), seg);
        self.scheduler.poke();
    }

    /// The segment `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Segment>> {
        self.segments.read().get(name).cloned()
    }

    /// Every segment, by name.
    pub fn all(&self) -> Vec<Arc<Segment>> {
        self.segments.read().values().cloned().collect()
    }

    /// The segment `name` and its space, or 42704.
    pub fn with_space(&self, spaces: &Spaces, name: &str) -> Result<(Arc<Segment>, Arc<Space>)> {
        let seg = self.get(name).ok_or_else(|| undefined(name))?;
        let space = spaces.get(&seg.def.space).ok_or_else(|| {
            EngineError::UndefinedObject(format!(
                "the profile space of segment \"{name}\" no longer exists"
            ))
        })?;
        Ok((seg, space))
    }

    fn definition(
        &self,
        spaces: &Spaces,
        name: &str,
        space_name: &str,
        refresh: &RefreshPolicy,
        body: &SegmentBody,
    ) -> Result<(SegmentDef, Arc<Space>)> {
        let space = spaces.get(space_name).ok_or_else(|| {
            EngineError::UndefinedObject(format!(
                "profile space \"{space_name}\" does not exist (UNIFY defines one)"
            ))
        })?;
        let (is_set, depends_on) = match body {
            SegmentBody::Query(_) => (false, Vec::new()),
            SegmentBody::Set(set) => {
                let mut deps: Vec<String> = Vec::new();
                for n in set.names() {
                    let dep = self.get(n).ok_or_else(|| undefined(n))?;
                    if dep.def.space != space_name {
                        return Err(EngineError::InvalidOption(format!(
                            "segment \"{n}\" is a set of {}, not of {space_name}",
                            dep.def.space
                        )));
                    }
                    if !deps.iter().any(|d| d == n) {
                        deps.push(n.to_string());
                    }
                }
                (true, deps)
            }
        };
        let every_seconds = match refresh {
            RefreshPolicy::Every(text) => Some(interval_seconds(text)?),
            _ => None,
        };
        let refresh_text = match refresh {
            RefreshPolicy::Every(text) => text.clone(),
            other => other.to_string(),
        };
        let def = SegmentDef {
            name: name.to_string(),
            space: space_name.to_string(),
            refresh: refresh_text,
            every_seconds,
            body: body.to_string(),
            is_set,
            depends_on,
        };
        Ok((def, space))
    }

    /// Refuses a definition whose set reaches back to itself.
    fn check_cycles(&self, def: &SegmentDef) -> Result<()> {
        let mut stack: Vec<(String, Vec<String>)> = def
            .depends_on
            .iter()
            .map(|d| (d.clone(), vec![def.name.clone(), d.clone()]))
            .collect();
        while let Some((n, path)) = stack.pop() {
            if n == def.name {
                return Err(EngineError::InvalidDefinition(format!(
                    "segment \"{}\" would depend on itself: {}",
                    def.name,
                    path.join(" -> ")
                )));
            }
            if let Some(s) = self.get(&n) {
                for d in &s.def.depends_on {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
        Ok(())
    }

    /// `CREATE [OR REPLACE] SEGMENT`: checks, computes the members, and
    /// publishes definition and first version at once.
    pub async fn create(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        stmt: &CreateSegment,
    ) -> Result<Arc<Segment>> {
        let _changing = self.changing.lock().await;
        let space_name = crate::unify::storage_name(&stmt.space)?;
        if let Some(existing) = self.get(&stmt.name)
            && !stmt.or_replace
        {
            return Err(EngineError::DuplicateObject(format!(
                "segment \"{}\" already exists (CREATE OR REPLACE SEGMENT replaces it)",
                existing.def.name
            )));
        }
        let (def, space) =
            self.definition(spaces, &stmt.name, &space_name, &stmt.refresh, &stmt.body)?;
        if let Some(existing) = self.get(&stmt.name) {
            if existing.def.space != def.space {
                return Err(EngineError::InvalidOption(format!(
                    "segment \"{}\" is a set of {}; drop it to define it over {}",
                    def.name, existing.def.space, def.space
                )));
            }
            self.check_cycles(&def)?;
        }
        self.define(engine, &space, def, &stmt.body).await
    }

    /// `ALTER SEGMENT`: a new body (recomputed now) or a new policy.
    pub async fn alter(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        stmt: &AlterSegment,
    ) -> Result<Arc<Segment>> {
        let _changing = self.changing.lock().await;
        let (seg, _) = self.with_space(spaces, &stmt.name)?;
        let current_policy = seg.def.policy();
        let (body, refresh) = match &stmt.change {
            AlterSegmentChange::Body(b) => (b.clone(), current_policy),
            AlterSegmentChange::Refresh(r) => {
                let body = crate::segments::expr::reparse_body(&seg.def)?;
                (body, r.clone())
            }
        };
        let (def, space) = self.definition(spaces, &stmt.name, &seg.def.space, &refresh, &body)?;
        self.check_cycles(&def)?;
        if let AlterSegmentChange::Refresh(_) = &stmt.change {
            // Only the policy changes: the members stay.
            let bytes = encode_def(&def)?;
            engine.set_extension(&format!("{KEY_PREFIX}{}", def.name), Some(bytes))?;
            let updated = Arc::new(Segment::new(def, seg.latest.clone()));
            self.install(Arc::clone(&updated));
            return Ok(updated);
        }
        self.define(engine, &space, def, &body).await
    }

    async fn define(
        &self,
        engine: &SqlEngine,
        space: &Arc<Space>,
        def: SegmentDef,
        body: &SegmentBody,
    ) -> Result<Arc<Segment>> {
        let started = Instant::now();
        let writes = Seen::now(space);
        let members = self.compute(engine, space, &def, body).await?;
        let previous = self.get(&def.name).map(|s| s.latest.clone());
        let version = Version::next(previous.as_ref(), members, started.elapsed(), writes);
        let key = format!("{KEY_PREFIX}{}", def.name);
        store::publish(
            engine,
            space,
            &def.name,
            &version,
            Some((&key, encode_def(&def)?)),
        )?;
        let seg = Arc::new(Segment::computed(def, version, false));
        self.install(Arc::clone(&seg));
        Ok(seg)
    }

    /// The members `body` defines now.
    async fn compute(
        &self,
        engine: &SqlEngine,
        space: &Arc<Space>,
        def: &SegmentDef,
        body: &SegmentBody,
    ) -> Result<RoaringBitmap> {
        match body {
            SegmentBody::Set(set) => Ok((*self.members_of(space, &SetExpr::from(set))?).clone()),
            SegmentBody::Query(q) => {
                let stmt = tessera_sql::parser::Statement::Sql(Box::new(
                    tessera_sql::datafusion::sql::sqlparser::ast::Statement::Query(q.clone()),
                ));
                // A segment is the database's own: its definition reads the
                // values, whoever's write triggered the refresh (an ON
                // COMMIT refresh runs inside a masked role's statement).
                let out = tessera_sql::pii::STATEMENT_ACCESS
                    .scope(tessera_sql::pii::PiiAccess::owner(), engine.run(stmt))
                    .await?;
                let Some(first) = out.schema.fields().first() else {
                    return Err(not_ids(&def.name, "returns no column"));
                };
                if !matches!(
                    first.data_type(),
                    DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                ) {
                    return Err(not_ids(
                        &def.name,
                        &format!(
                            "returns {} in its first column",
                            tessera_sql::types::sql_name(first.data_type())
                        ),
                    ));
                }
                ids_of(space, def, &out.batches)
            }
        }
    }

    /// The size of a set expression over segments of `space`, counted
    /// block by block on bitsets without building the result
    /// ([`dense`]).
    pub fn count(&self, space: &Space, e: &SetExpr) -> Result<u64> {
        let d = self.dense(space, e)?;
        let universe = if d.needs_universe() {
            let key = mapped_for(space);
            let mut u = self.universe.lock();
            match &*u {
                Some((seen, bits)) if *seen == key => Arc::clone(bits),
                _ => {
                    let bits = Arc::new(dense::Bits::of(&space.live_profiles()));
                    *u = Some((key, Arc::clone(&bits)));
                    bits
                }
            }
        } else {
            Arc::new(dense::Bits::default())
        };
        Ok(d.count(&universe))
    }

    fn dense(&self, space: &Space, e: &SetExpr) -> Result<dense::Dense> {
        use dense::Dense as D;
        let pair = |a: &SetExpr, b: &SetExpr| -> Result<(Box<D>, Box<D>)> {
            Ok((
                Box::new(self.dense(space, a)?),
                Box::new(self.dense(space, b)?),
            ))
        };
        Ok(match e {
            SetExpr::Name(n) => D::Set(self.get(n).ok_or_else(|| undefined(n))?.bits(space)),
            SetExpr::And(a, b) => match (&**a, &**b) {
                (x, SetExpr::Not(y)) | (SetExpr::Not(y), x) => {
                    let (x, y) = pair(x, y)?;
                    D::AndNot(x, y)
                }
                _ => {
                    let (x, y) = pair(a, b)?;
                    D::And(x, y)
                }
            },
            SetExpr::Or(a, b) => {
                let (x, y) = pair(a, b)?;
                D::Or(x, y)
            }
            SetExpr::Not(a) => D::Not(Box::new(self.dense(space, a)?)),
        })
    }

    /// The members of a set expression over segments of `space`, from
    /// their current members, without copying a segment's bitmap; `a & !b`
    /// is `a - b`, so the live profiles are built only for a `!` elsewhere.
    pub fn members_of(&self, space: &Space, e: &SetExpr) -> Result<Arc<RoaringBitmap>> {
        self.eval(space, e, &mut None)
    }

    fn eval(
        &self,
        space: &Space,
        e: &SetExpr,
        universe: &mut Option<Arc<RoaringBitmap>>,
    ) -> Result<Arc<RoaringBitmap>> {
        Ok(match e {
            SetExpr::Name(n) => self.get(n).ok_or_else(|| undefined(n))?.members(space),
            SetExpr::And(a, b) => match (&**a, &**b) {
                (x, SetExpr::Not(y)) | (SetExpr::Not(y), x) => {
                    let (x, y) = (
                        self.eval(space, x, universe)?,
                        self.eval(space, y, universe)?,
                    );
                    Arc::new(&*x - &*y)
                }
                _ => {
                    let (x, y) = (
                        self.eval(space, a, universe)?,
                        self.eval(space, b, universe)?,
                    );
                    Arc::new(&*x & &*y)
                }
            },
            SetExpr::Or(a, b) => {
                let (x, y) = (
                    self.eval(space, a, universe)?,
                    self.eval(space, b, universe)?,
                );
                Arc::new(&*x | &*y)
            }
            SetExpr::Not(a) => {
                let x = self.eval(space, a, universe)?;
                let u = Arc::clone(universe.get_or_insert_with(|| Arc::new(space.live_profiles())));
                Arc::new(&*u - &*x)
            }
        })
    }

    /// `REFRESH SEGMENT name`: recomputes it (a set from the current
    /// members of its segments). Returns the new version.
    pub async fn refresh(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        name: &str,
    ) -> Result<Arc<Segment>> {
        let _changing = self.changing.lock().await;
        self.refresh_locked(engine, spaces, name, false).await
    }

    /// Recomputes segment `name`: from the rows appended since its
    /// version when `incremental` allows and its definition does
    /// ([`incremental`]), else in full.
    async fn refresh_locked(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        name: &str,
        incremental: bool,
    ) -> Result<Arc<Segment>> {
        let (seg, space) = self.with_space(spaces, name)?;
        let body = crate::segments::expr::reparse_body(&seg.def)?;
        let started = Instant::now();
        if let (true, SegmentBody::Query(q)) = (incremental, &body)
            && let Some(updated) = self
                .refresh_incrementally(engine, &space, &seg, q, started)
                .await?
        {
            return Ok(updated);
        }
        let writes = Seen::now(&space);
        let members = self.compute(engine, &space, &seg.def, &body).await?;
        let version = Version::next(Some(&seg.latest), members, started.elapsed(), writes);
        store::publish(engine, &space, name, &version, None)?;
        let updated = Arc::new(Segment::computed(seg.def.clone(), version, seg.reads_clock));
        self.install(Arc::clone(&updated));
        Ok(updated)
    }

    /// The new version of `seg` from the rows appended since its latest,
    /// or `None` when those rows are not all known or the definition does
    /// not allow it.
    async fn refresh_incrementally(
        &self,
        engine: &SqlEngine,
        space: &Arc<Space>,
        seg: &Segment,
        q: &tessera_sql::datafusion::sql::sqlparser::ast::Query,
        started: Instant,
    ) -> Result<Option<Arc<Segment>>> {
        let seen = seg.latest.writes_seen;
        let Some((upto, appended)) = space.appended().since(seen.epoch, seen.writes) else {
            return Ok(None);
        };
        let Some(plan) = incremental::row_plan(engine, space, q).await else {
            return Ok(None);
        };
        let mut members = as_current(space, &seg.latest.members);
        // Should the plan not run incrementally, a full run still can.
        match plan.kind {
            incremental::Incremental::Rows => {
                let rows = incremental::rows_for(&plan, &appended);
                let Ok(out) = incremental::run_over(engine, &plan, rows).await else {
                    return Ok(None);
                };
                members |= ids_of(space, &seg.def, &out)?;
            }
            incremental::Incremental::Groups => {
                let Some(touched) = incremental::touched(space, &appended) else {
                    return Ok(None);
                };
                if !touched.is_empty() {
                    let only = |id| {
                        crate::functions::segment::InProfiles::expr(space, touched.clone(), id)
                    };
                    let Ok(out) = incremental::run_for(engine, &plan, only).await else {
                        return Ok(None);
                    };
                    members -= &touched;
                    members |= ids_of(space, &seg.def, &out)?;
                }
            }
        }
        members.optimize();
        let writes = Seen {
            writes: upto,
            ..seen
        };
        let version = Version::next(Some(&seg.latest), members, started.elapsed(), writes);
        store::publish(engine, space, &seg.def.name, &version, None)?;
        let updated = Arc::new(Segment {
            kind: Some(RefreshKind::Incremental),
            full_at: seg.full_at,
            reads_clock: plan.reads_clock,
            ..Segment::new(seg.def.clone(), version)
        });
        self.install(Arc::clone(&updated));
        Ok(Some(updated))
    }

    /// `names`, dependencies first.
    fn in_dependency_order(&self, names: &[String]) -> Vec<String> {
        let wanted: Vec<String> = names.to_vec();
        let mut order: Vec<String> = Vec::new();
        while order.len() < wanted.len() {
            let before = order.len();
            for n in &wanted {
                if order.contains(n) {
                    continue;
                }
                let ready = self.get(n).is_none_or(|s| {
                    s.def
                        .depends_on
                        .iter()
                        .all(|d| order.contains(d) || !wanted.contains(d))
                });
                if ready {
                    order.push(n.clone());
                }
            }
            if order.len() == before {
                break; // a cycle (refused at definition): stop
            }
        }
        order
    }

    /// `REFRESH SEGMENTS`: every segment, in dependency order.
    pub async fn refresh_all(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
    ) -> Result<Vec<Arc<Segment>>> {
        let _changing = self.changing.lock().await;
        let names: Vec<String> = self.all().iter().map(|s| s.def.name.clone()).collect();
        let mut out = Vec::new();
        for n in self.in_dependency_order(&names) {
            out.push(self.refresh_locked(engine, spaces, &n, false).await?);
        }
        Ok(out)
    }

    /// Refreshes the `ON COMMIT` segments of the spaces written since their
    /// last refresh, in dependency order, incrementally where they allow.
    /// Called after each statement.
    pub async fn refresh_due(&self, engine: &SqlEngine, spaces: &Spaces) -> Result<()> {
        let due = self.due(spaces);
        if !due.is_empty() {
            let _changing = self.changing.lock().await;
            for n in self.in_dependency_order(&due) {
                self.refresh_locked(engine, spaces, &n, true).await?;
            }
        }
        self.keep_appends(spaces);
        Ok(())
    }

    /// The `ON COMMIT` segments whose space committed writes after their
    /// latest version.
    pub fn due(&self, spaces: &Spaces) -> Vec<String> {
        self.all()
            .iter()
            .filter(|s| {
                s.def.policy() == RefreshPolicy::OnCommit
                    && spaces
                        .get(&s.def.space)
                        .is_some_and(|space| s.latest.writes_seen.behind(&space))
            })
            .map(|s| s.def.name.clone())
            .collect()
    }

    /// Tells each space whether to keep the rows its writes append (while
    /// an `ON COMMIT` query segment may be refreshed from them), and to
    /// forget those every such segment has seen.
    pub fn keep_appends(&self, spaces: &Spaces) {
        let all = self.all();
        for space in spaces.all() {
            let readers: Vec<&Arc<Segment>> = all
                .iter()
                .filter(|s| s.def.policy() == RefreshPolicy::OnCommit && !s.def.is_set)
                .filter(|s| {
                    spaces
                        .get(&s.def.space)
                        .is_some_and(|x| Arc::ptr_eq(&x, &space))
                })
                .collect();
            let recent = space.appended();
            if readers.is_empty() {
                if recent.wanted() {
                    recent.set_wanted(false);
                }
                continue;
            }
            recent.set_wanted(true);
            let seen = readers
                .iter()
                .filter(|s| s.latest.writes_seen.epoch == recent.epoch())
                .map(|s| s.latest.writes_seen.writes)
                .min();
            if let Some(seen) = seen {
                recent.forget_through(seen);
            }
        }
    }

    /// When the scheduler has work next (microseconds since the Unix
    /// epoch), if ever.
    pub fn next_scheduled(&self) -> Option<i64> {
        self.all().iter().filter_map(|s| s.next_scheduled()).min()
    }

    /// Refreshes, in full and in dependency order, the segments whose
    /// scheduled time ([`Segment::next_scheduled`]) has come. A failure is
    /// kept in the segment's `last_error` and the others still refresh;
    /// returns how many were refreshed and how many failed.
    pub async fn refresh_scheduled(&self, engine: &SqlEngine, spaces: &Spaces) -> (usize, usize) {
        let now = crate::identity::graph::now_micros();
        let due: Vec<String> = self
            .all()
            .iter()
            .filter(|s| s.next_scheduled().is_some_and(|at| at <= now))
            .map(|s| s.def.name.clone())
            .collect();
        if due.is_empty() {
            return (0, 0);
        }
        let _changing = self.changing.lock().await;
        let (mut done, mut failed) = (0, 0);
        for n in self.in_dependency_order(&due) {
            match self.refresh_locked(engine, spaces, &n, false).await {
                Ok(_) => done += 1,
                Err(e) => {
                    failed += 1;
                    if let Some(s) = self.get(&n) {
                        *s.last_error.lock() = Some(e.to_string());
                    }
                }
            }
        }
        (done, failed)
    }

    /// `DROP SEGMENT`: refused while other segments are sets of it.
    pub async fn drop_segment(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        name: &str,
        if_exists: bool,
    ) -> Result<bool> {
        let _changing = self.changing.lock().await;
        let Some(seg) = self.get(name) else {
            return if if_exists {
                Ok(false)
            } else {
                Err(undefined(name))
            };
        };
        let users: Vec<String> = self
            .all()
            .iter()
            .filter(|s| s.def.depends_on.iter().any(|d| d == name))
            .map(|s| s.def.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Sql(SqlError::DependentObjects(format!(
                "cannot drop segment {name}: segment {} is defined over it",
                users.join(", ")
            ))));
        }
        engine.set_extension(&format!("{KEY_PREFIX}{name}"), None)?;
        self.segments.write().remove(name);
        self.scheduler.poke();
        if let Some(space) = spaces.get(&seg.def.space) {
            store::forget(engine, &space, name)?;
        }
        Ok(true)
    }

    /// Every stored version of segment `name`, oldest first.
    pub fn history_of(&self, spaces: &Spaces, name: &str) -> Result<Vec<Version>> {
        let (_, space) = self.with_space(spaces, name)?;
        store::history(space.store(), &space, name)
    }
}

/// The profile ids in the first column of a definition's output, as the
/// profiles they are now.
fn ids_of(space: &Space, def: &SegmentDef, batches: &[RecordBatch]) -> Result<RoaringBitmap> {
    let created = space.profiles_created();
    let mut ids: Vec<u32> = Vec::new();
    for b in batches {
        let col = cast(b.column(0), &DataType::Int64)?;
        let col = col.as_primitive::<Int64Type>();
        for i in 0..col.len() {
            if col.is_null(i) {
                continue;
            }
            let v = col.value(i);
            let id = u64::try_from(v)
                .ok()
                .filter(|id| *id < created)
                .and_then(|id| u32::try_from(space.current(id)).ok())
                .ok_or_else(|| {
                    not_ids(
                        &def.name,
                        &format!("returns {v}, which is not a profile id of {}", def.space),
                    )
                })?;
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut b = RoaringBitmap::from_sorted_iter(ids).unwrap_or_default();
    b.optimize();
    Ok(b)
}

fn not_ids(segment: &str, what: &str) -> EngineError {
    EngineError::Sql(SqlError::Storage(
        tessera_sql::storage::Error::SchemaMismatch(format!(
            "the query of segment \"{segment}\" {what}; a segment's query returns the profile ids of its space in its first column"
        )),
    ))
}

/// The output of a segment statement: one row per segment it computed
/// (`segment`, `size`, `version`, `seconds`), and its tag.
pub fn report(tag: &str, changed: &[Arc<Segment>]) -> Result<tessera_sql::QueryOutput> {
    use tessera_sql::datafusion::arrow::array::{
        Float64Array, Int64Array, RecordBatch, StringArray,
    };
    use tessera_sql::datafusion::arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("size", DataType::Int64, false),
        Field::new("version", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                changed.iter().map(|s| s.def.name.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                changed.iter().map(|s| s.latest.members.len() as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                changed.iter().map(|s| s.latest.number),
            )),
            Arc::new(Float64Array::from_iter_values(
                changed.iter().map(|s| s.latest.seconds),
            )),
        ],
    )?;
    let (schema, batches) = if changed.is_empty() {
        (Arc::new(Schema::empty()), Vec::new())
    } else {
        (schema, vec![batch])
    };
    Ok(tessera_sql::QueryOutput {
        schema,
        batches,
        tag: tag.to_string(),
    })
}
