//! `UNIFY`: from the statement to the identity graph and its tables.
//!
//! A full run reads the identifier columns of every source (a first pass
//! counts links to find junk values, a second resolves records in source
//! order), then writes three tables next to the space's name:
//!
//! - `space` — one row per profile: `profile_id`, `records`, the records of
//!   each source (`<table>_records`), and the identifiers it holds
//!   (`identifiers`, `kind:value` TEXT[]);
//! - `space_identifiers` — `profile_id`, `kind`, `value` (normalised);
//! - `space_merges` — the lineage: `merged_profile`, `surviving_profile`,
//!   `kind`, `value` (the identifier that linked them), `record` (the
//!   sequence number of the record that did).
//!
//! The definition is kept in the catalog.

use std::sync::Arc;
use std::time::Instant;

use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use tessera_sql::datafusion::sql::sqlparser::ast::{ObjectName, Value};
use tessera_sql::parser::{Unify, UnifyOption};
use tessera_sql::storage::{ScanOptions, ScanPartition, Store};

use crate::error::{EngineError, Result};
use crate::identity::graph::{GraphConfig, IdentityGraph, JunkDetector, KindSpec, Prepared};
use crate::identity::normalize::{Normalizer, Region};

/// A source table of a profile space.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceSpec {
    /// Storage name (`schema.table`).
    pub table: String,
    /// The table's name as written (for column names of the profile table).
    pub label: String,
    /// (kind index, column).
    pub columns: Vec<(usize, String)>,
}

/// A profile space: its sources and how they are matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnifySpec {
    /// Schema of the output tables.
    pub schema: String,
    /// The space's name (its profile table).
    pub name: String,
    /// The sources, in order.
    pub sources: Vec<SourceSpec>,
    /// Kinds, limits, normalisers.
    pub config: GraphConfig,
}

/// PostgreSQL folds unquoted identifiers to lower case.
pub(crate) fn ident(i: &tessera_sql::datafusion::sql::sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn split_name(name: &ObjectName) -> Result<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string()))
        .collect();
    match parts.as_slice() {
        [t] => Ok((tessera_sql::DEFAULT_SCHEMA.to_string(), t.clone())),
        [s, t] => Ok((s.clone(), t.clone())),
        _ => Err(EngineError::InvalidOption(format!(
            "\"{name}\" is not a table name (use table or schema.table)"
        ))),
    }
}

/// The storage name (`schema.table`) of a name as written.
pub fn storage_name(name: &ObjectName) -> Result<String> {
    let (s, t) = split_name(name)?;
    Ok(format!("{s}.{t}"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
        Value::Number(n, _) => Some(n.clone()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The default normaliser of a kind, by its name.
fn default_normalizer(kind: &str) -> Normalizer {
    if kind.contains("email") || kind.contains("mail") {
        Normalizer::Email
    } else if kind.contains("phone") || kind.contains("mobile") || kind == "tel" {
        Normalizer::Phone
    } else {
        Normalizer::Trim
    }
}

/// Kinds that identify a device or browser, not a person, are weak by default.
fn default_weak(kind: &str) -> bool {
    ["device", "anonymous", "cookie", "session", "browser"]
        .iter()
        .any(|w| kind.contains(w))
}

impl UnifySpec {
    /// Checks a `UNIFY` statement against the tables of `store` and builds
    /// its definition.
    pub fn from_statement(stmt: &Unify, store: &Store) -> Result<Self> {
        let (schema, name) = split_name(&stmt.space)?;
        let mut kinds: Vec<KindSpec> = Vec::new();
        let mut sources = Vec::new();
        for s in &stmt.sources {
            let (ts, tn) = split_name(&s.table)?;
            let storage = format!("{ts}.{tn}");
            let table_schema = store
                .table(&storage)
                .map_err(|_| {
                    EngineError::Sql(tessera_sql::SqlError::UndefinedTable(s.table.to_string()))
                })?
                .schema();
            let mut columns = Vec::new();
            for (k, c) in &s.identifiers {
                let (kind, column) = (ident(k), ident(c));
                let field = table_schema.field_with_name(&column).map_err(|_| {
                    EngineError::UndefinedColumn(format!(
                        "column \"{column}\" of relation \"{}\" does not exist",
                        s.table
                    ))
                })?;
                if matches!(field.data_type(), DataType::List(_) | DataType::Boolean) {
                    return Err(EngineError::InvalidOption(format!(
                        "column \"{column}\" of \"{}\" is {}: identifiers are text or numbers",
                        s.table,
                        tessera_sql::types::sql_name(field.data_type())
                    )));
                }
                let index = match kinds.iter().position(|x| x.name == kind) {
                    Some(i) => i,
                    None => {
                        kinds.push(KindSpec {
                            normalizer: default_normalizer(&kind),
                            limit: None,
                            strong: !default_weak(&kind),
                            name: kind,
                        });
                        kinds.len() - 1
                    }
                };
                columns.push((index, column));
            }
            sources.push(SourceSpec {
                table: storage,
                label: tn,
                columns,
            });
        }
        for s in &sources {
            for suffix in ["", "_identifiers", "_merges", "_junk"] {
                if s.table == format!("{schema}.{name}{suffix}") {
                    return Err(EngineError::InvalidOption(format!(
                        "UNIFY {name} would write its table {name}{suffix} over the source \"{}\"; choose another name",
                        s.label
                    )));
                }
            }
        }
        let mut config = GraphConfig {
            kinds,
            region: Region::parse("US")?,
            blocklist: Vec::new(),
            max_links: Some(10),
        };
        let mut blocklists: Vec<(usize, String)> = Vec::new();
        let mut priority: Option<Vec<String>> = None;
        for o in &stmt.options {
            apply_option(&mut config, o, &mut blocklists, &mut priority)?;
        }
        if u8::try_from(config.kinds.len()).is_err() {
            return Err(EngineError::InvalidOption(
                "a profile space has at most 255 identifier kinds".into(),
            ));
        }
        // Blocklisted values are compared in normalised form.
        for (k, v) in blocklists {
            let n = config.kinds[k].normalizer;
            if let Some(norm) = n.apply(&v, config.region) {
                config.blocklist.push((k, norm));
            }
        }
        let mut spec = UnifySpec {
            schema,
            name,
            sources,
            config,
        };
        if let Some(order) = priority {
            spec.reorder(&order)?;
        }
        Ok(spec)
    }

    /// Puts the kinds named in `order` first, in that order.
    fn reorder(&mut self, order: &[String]) -> Result<()> {
        let mut perm: Vec<usize> = Vec::new();
        for name in order {
            let i = self
                .config
                .kinds
                .iter()
                .position(|k| &k.name == name)
                .ok_or_else(|| unknown_kind(&self.config, name))?;
            if !perm.contains(&i) {
                perm.push(i);
            }
        }
        for i in 0..self.config.kinds.len() {
            if !perm.contains(&i) {
                perm.push(i);
            }
        }
        let new_index = |old: usize| perm.iter().position(|p| *p == old).unwrap_or(old);
        self.config.kinds = perm.iter().map(|i| self.config.kinds[*i].clone()).collect();
        for (k, _) in &mut self.config.blocklist {
            *k = new_index(*k);
        }
        for s in &mut self.sources {
            for (k, _) in &mut s.columns {
                *k = new_index(*k);
            }
        }
        Ok(())
    }

    /// The storage name of an output table (`suffix` "" for the profiles).
    pub fn table(&self, suffix: &str) -> String {
        format!("{}.{}{suffix}", self.schema, self.name)
    }
}

impl UnifySpec {
    /// The index of identifier kind `kind` (any case, spaces around), or
    /// 22023 naming the kinds the space has.
    pub fn kind_index(&self, kind: &str) -> Result<usize> {
        let kind = kind.trim().to_lowercase();
        let kinds = &self.config.kinds;
        kinds.iter().position(|k| k.name == kind).ok_or_else(|| {
            let names: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
            EngineError::InvalidOption(format!(
                "\"{kind}\" is not an identifier kind of profile space {} (kinds: {})",
                self.name,
                names.join(", ")
            ))
        })
    }
}

fn unknown_kind(config: &GraphConfig, kind: &str) -> EngineError {
    let names: Vec<&str> = config.kinds.iter().map(|k| k.name.as_str()).collect();
    EngineError::InvalidOption(format!(
        "\"{kind}\" is not an identifier kind of this UNIFY (kinds: {})",
        names.join(", ")
    ))
}

fn apply_option(
    config: &mut GraphConfig,
    o: &UnifyOption,
    blocklists: &mut Vec<(usize, String)>,
    priority: &mut Option<Vec<String>>,
) -> Result<()> {
    let key: Vec<String> = o.key.iter().map(ident).collect();
    let value = text(&o.value).ok_or_else(|| {
        EngineError::InvalidOption(format!("option {o}: the value must be a literal"))
    })?;
    let int = |v: &str| -> Result<i64> {
        v.parse().map_err(|_| {
            EngineError::InvalidOption(format!("option {o}: expected a whole number, got {v}"))
        })
    };
    match key.as_slice() {
        [p] if p == "priority" => {
            *priority = Some(
                value
                    .split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect(),
            );
        }
        [m] if m == "max_links" => {
            let n = int(&value)?;
            config.max_links = match n {
                0 => None,
                n if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                _ => {
                    return Err(EngineError::InvalidOption(format!(
                        "option {o}: max_links is 0 (off) or more"
                    )));
                }
            };
        }
        [kind, what] => {
            let i = config
                .kinds
                .iter()
                .position(|k| &k.name == kind)
                .ok_or_else(|| unknown_kind(config, kind))?;
            match what.as_str() {
                "normalize" | "normalise" => {
                    config.kinds[i].normalizer = Normalizer::parse(&value)?
                }
                "limit" => {
                    let n = int(&value)?;
                    if n < 1 {
                        return Err(EngineError::InvalidOption(format!(
                            "option {o}: a limit is at least 1 (a profile holds at least one {kind})"
                        )));
                    }
                    config.kinds[i].limit = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
                "weak" => {
                    config.kinds[i].strong = match value.to_lowercase().as_str() {
                        "true" | "on" | "1" => false,
                        "false" | "off" | "0" => true,
                        _ => {
                            return Err(EngineError::InvalidOption(format!(
                                "option {o}: expected true or false"
                            )));
                        }
                    }
                }
                "region" => config.region = Region::parse(&value)?,
                "blocklist" => blocklists.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| (i, v.to_string())),
                ),
                other => {
                    return Err(EngineError::InvalidOption(format!(
                        "unknown option {kind}.{other}; use normalize, limit, weak, region or blocklist"
                    )));
                }
            }
        }
        _ => {
            return Err(EngineError::InvalidOption(format!(
                "unknown option {o}; see UNIFY's options (kind.limit, kind.normalize, priority, max_links, …)"
            )));
        }
    }
    Ok(())
}

/// The column a source's records are timed by: its first TIMESTAMP,
/// TIMESTAMPTZ or DATE column (first/last seen of values and profiles).
pub fn time_column(schema: &Schema) -> Option<String> {
    schema
        .fields()
        .iter()
        .find(|f| matches!(f.data_type(), DataType::Timestamp(_, _) | DataType::Date32))
        .map(|f| f.name().clone())
}

/// The column of generated profile ids every source gains.
pub const PROFILE_ID: &str = "profile_id";

/// Calls `f` with the raw identifiers and time (microseconds since the
/// epoch) of every row of `batch`, a batch of `source` holding at least its
/// identifier columns (and `time`, if named).
pub fn for_each_row(
    batch: &RecordBatch,
    source: &SourceSpec,
    time: Option<&str>,
    mut f: impl FnMut(&[(usize, &str)], Option<i64>),
) -> Result<()> {
    let mut texts: Vec<(usize, ArrayRef)> = Vec::with_capacity(source.columns.len());
    for (k, c) in &source.columns {
        let col = batch.column_by_name(c).ok_or_else(|| {
            EngineError::UndefinedColumn(format!(
                "column \"{c}\" of relation \"{}\" does not exist",
                source.label
            ))
        })?;
        texts.push((*k, cast(col, &DataType::Utf8)?));
    }
    let times = match time.and_then(|t| batch.column_by_name(t)) {
        Some(c) => Some(cast(
            c,
            &DataType::Timestamp(
                tessera_sql::datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            ),
        )?),
        None => None,
    };
    let times = times.as_ref().map(|t| {
        t.as_primitive::<tessera_sql::datafusion::arrow::datatypes::TimestampMicrosecondType>()
    });
    let strings: Vec<(usize, &StringArray)> = texts
        .iter()
        .map(|(k, a)| (*k, a.as_string::<i32>()))
        .collect();
    let mut raw: Vec<(usize, &str)> = Vec::with_capacity(strings.len());
    for row in 0..batch.num_rows() {
        raw.clear();
        for (k, s) in &strings {
            if s.is_valid(row) {
                raw.push((*k, s.value(row)));
            }
        }
        let t = times.and_then(|t| t.is_valid(row).then(|| t.value(row)));
        f(&raw, t);
    }
    Ok(())
}

/// Resolves the rows of `batch` (a batch of `source`, number `index` of
/// the space) into `graph` and returns it with its `profile_id` column set
/// (added at the end if the batch lacks it) to each row's profile.
pub fn resolve_batch(
    graph: &mut IdentityGraph,
    batch: &RecordBatch,
    source: &SourceSpec,
    index: usize,
    time: Option<&str>,
) -> Result<RecordBatch> {
    let mut prepared = Prepared::default();
    let preparer = graph.preparer();
    for_each_row(batch, source, time, |raw, t| {
        preparer.push(raw, t, &mut prepared)
    })?;
    with_profile_ids(graph, batch, &prepared, index)
}

/// Resolves `prepared`, the records of `batch` (a batch of source number
/// `index`), into `graph` and returns the batch with its `profile_id`
/// column set.
fn with_profile_ids(
    graph: &mut IdentityGraph,
    batch: &RecordBatch,
    prepared: &Prepared,
    index: usize,
) -> Result<RecordBatch> {
    let ids: Int64Array = (0..prepared.len())
        .map(|r| graph.add_prepared(prepared, r, index).map(|p| p as i64))
        .collect();
    let column: ArrayRef = Arc::new(ids);
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    match batch.schema().index_of(PROFILE_ID) {
        Ok(i) => columns[i] = column,
        Err(_) => {
            fields.push(Field::new(PROFILE_ID, DataType::Int64, true));
            columns.push(column);
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// What a full run did.
#[derive(Debug, Clone)]
pub struct UnifyReport {
    /// Records read per source.
    pub records: Vec<u64>,
    /// Live profiles.
    pub profiles: u64,
    /// Merges.
    pub merges: u64,
    /// Values excluded as junk.
    pub junk: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Resolves every record of the space's sources as `snapshot` holds them,
/// in source order and storage order: a first pass finds junk values, the
/// second resolves, reading and preparing batches on a thread of its own
/// ([`Prepared`]) while this one resolves them. `rows` receives each
/// source's batches with their `profile_id` column set, source by source.
pub fn resolve_all(
    snapshot: &tessera_sql::storage::Snapshot,
    spec: &UnifySpec,
    mut rows: impl FnMut(usize, RecordBatch) -> Result<()>,
) -> Result<(IdentityGraph, Vec<u64>)> {
    let mut graph = IdentityGraph::new(spec.config.clone(), spec.sources.len());
    if spec.config.max_links.is_some() {
        let detector = detect_junk(snapshot, spec, &graph)?;
        detector.apply(&mut graph);
    }
    // Records are prepared (read, normalised, hashed) on one thread and
    // resolved on this one, a batch behind; buffers go back to be reused.
    let rules = graph.prepare_rules();
    let records = std::thread::scope(|scope| -> Result<Vec<u64>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, RecordBatch, Prepared)>(4);
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Prepared>();
        let reader = scope.spawn(move || -> Result<Vec<u64>> {
            let preparer = rules.preparer();
            let mut records = Vec::with_capacity(spec.sources.len());
            for (i, s) in spec.sources.iter().enumerate() {
                let table = snapshot.table(&s.table)?;
                let time = time_column(&table.schema());
                let scan = table.scan(&ScanOptions::default())?;
                let mut n = 0u64;
                for part in scan.partitions {
                    for batch in part {
                        let batch = batch?;
                        n += batch.num_rows() as u64;
                        let mut prepared = spare_rx.try_recv().unwrap_or_default();
                        prepared.clear();
                        for_each_row(&batch, s, time.as_deref(), |raw, t| {
                            preparer.push(raw, t, &mut prepared)
                        })?;
                        if tx.send((i, batch, prepared)).is_err() {
                            // Resolution stopped; its error is reported.
                            return Ok(records);
                        }
                    }
                }
                records.push(n);
            }
            Ok(records)
        });
        let mut resolved = Ok(());
        for (i, batch, prepared) in &rx {
            resolved =
                with_profile_ids(&mut graph, &batch, &prepared, i).and_then(|out| rows(i, out));
            if resolved.is_err() {
                break;
            }
            // The reader may have stopped: a buffer it does not take is dropped.
            let _ = spare_tx.send(prepared);
        }
        drop(rx);
        let records = reader
            .join()
            .map_err(|_| EngineError::Io(std::io::Error::other("UNIFY's reader panicked")))?;
        resolved?;
        records
    })?;
    Ok((graph, records))
}

/// The junk-detection pass of [`resolve_all`]: every record's strong
/// identifiers observed, in source and storage order, on two threads (the
/// first half of the work on one, the second on the other, merged in that
/// order: the same detector as one pass). Nothing else runs during it.
fn detect_junk(
    snapshot: &tessera_sql::storage::Snapshot,
    spec: &UnifySpec,
    graph: &IdentityGraph,
) -> Result<JunkDetector> {
    // The records are cut in two halves of equal work, not of equal rows:
    // a record costs little to read and much per strong value to observe,
    // and most web events carry none. Work is weighed per segment from its
    // statistics and spread over the segment's batches (morsels).
    let mut work: Vec<(usize, ScanPartition, u64)> = Vec::new();
    for (i, s) in spec.sources.iter().enumerate() {
        let mut columns: Vec<String> = Vec::new();
        for (_, c) in &s.columns {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        let strong: Vec<&String> = s
            .columns
            .iter()
            .filter(|(k, _)| spec.config.kinds.get(*k).is_some_and(|k| k.strong))
            .map(|(_, c)| c)
            .collect();
        let scan = snapshot.table(&s.table)?.scan(&ScanOptions {
            projection: Some(columns),
            ..ScanOptions::default()
        })?;
        for part in scan.partitions {
            let rows = part.source_rows();
            let values: u64 = strong
                .iter()
                .map(|c| part.non_null(c).unwrap_or(rows))
                .sum();
            let weight = rows / 4 + values;
            let morsels = part.morsels();
            let share = weight / morsels.len().max(1) as u64;
            work.extend(morsels.into_iter().map(|m| (i, m, share)));
        }
    }
    let total: u64 = work.iter().map(|(_, _, w)| w).sum();
    let mut seen = 0u64;
    let split = work
        .iter()
        .position(|(_, _, w)| {
            seen += w;
            2 * seen > total
        })
        .map_or(work.len(), |i| i + 1);
    let later = work.split_off(split);
    let observe = |items: Vec<(usize, ScanPartition, u64)>| -> Result<JunkDetector> {
        let mut detector = graph.junk_detector();
        for (i, part, _) in items {
            for batch in part {
                for_each_row(&batch?, &spec.sources[i], None, |raw, _| {
                    detector.observe(graph, raw)
                })?;
            }
        }
        Ok(detector)
    };
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| observe(later));
        let first = observe(work);
        let second = second
            .join()
            .map_err(|_| EngineError::Io(std::io::Error::other("UNIFY's junk detection panicked")));
        (first, second)
    });
    let mut detector = first?;
    detector.merge(second??);
    Ok(detector)
}

/// A statement's timer and the report it fills.
pub fn report(graph: &IdentityGraph, records: Vec<u64>, started: Instant) -> UnifyReport {
    UnifyReport {
        records,
        profiles: graph.live_profiles(),
        merges: graph.stats().merges,
        junk: graph.junk().len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    }
}
