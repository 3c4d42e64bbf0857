//! The SEGMENT functions, over the latest members of each segment (mapped
//! through the merges of its space since):
//!
//! | function | returns |
//! |---|---|
//! | `in_segment(profile_id, 'name')` | whether the profile is a member (a bitmap probe) |
//! | `segment_count('a & !b \| c' [, 'purpose'])` | the size of a set expression, computed on the bitmaps (with a purpose: of its members consenting to it) |
//! | `segment('name' [, purpose => 'p'])` | the members, with the columns of the space's profile table (with a purpose: those consenting to it) |
//! | `segment_history('name')` | every version: `version`, `refreshed_at`, `seconds`, `size`, `entered`, `exited` |
//! | `segment_changes('name', since)` | (`profile_id`, `change` 'entered'/'exited', `at`) between version `since` (a number, or a timestamp: the version then) and the latest |
//! | `segment_overlap('a', 'b')` | `only_a`, `both`, `only_b` |
//! | `segment_sample('name', fraction, seed)` | a deterministic subset: the same profiles for the same seed, whatever the refresh |
//!
//! And the table `segments`: one row per segment (name, space, definition,
//! refresh policy, size, version, last refresh and its duration, the
//! segments it is defined over).

use std::sync::Arc;

use roaring::RoaringBitmap;
use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit,
};
use tessera_sql::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use tessera_sql::datafusion::common::ScalarValue;
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::{invalid, literal_text};
use crate::EngineError;
use crate::privacy::consent::Consents;
use crate::profiles::{ProfileTable, ProfileTableKind};
use crate::segments::expr::SetExpr;
use crate::segments::{Segment, Segments, as_current};
use crate::space::Space;
use crate::spaces::Spaces;
use tessera_sql::storage::IdSet;

/// What the segment functions need: the spaces and the segments.
#[derive(Debug, Clone)]
pub struct Context {
    spaces: Arc<Spaces>,
    segments: Arc<Segments>,
    consents: Arc<Consents>,
    pii: tessera_sql::pii::PiiTags,
}

impl Context {
    /// Over one database's spaces, segments, consent records and PII tags.
    pub fn new(
        spaces: Arc<Spaces>,
        segments: Arc<Segments>,
        consents: Arc<Consents>,
        pii: tessera_sql::pii::PiiTags,
    ) -> Self {
        Self {
            spaces,
            segments,
            consents,
            pii,
        }
    }

    /// The profiles of `space` consenting to `purpose`.
    fn consenting(&self, space: &Arc<Space>, purpose: &str) -> DfResult<RoaringBitmap> {
        Ok(self
            .consents
            .decisions(space)
            .map_err(EngineError::into_datafusion)?
            .granted(purpose))
    }

    fn segment(&self, name: &str) -> DfResult<(Arc<Segment>, Arc<Space>)> {
        let name = fold(name);
        self.segments
            .with_space(&self.spaces, &name)
            .map_err(EngineError::into_datafusion)
    }

    fn members(&self, name: &str) -> DfResult<(Arc<RoaringBitmap>, Arc<Space>)> {
        let (seg, space) = self.segment(name)?;
        Ok((seg.members(&space), space))
    }

    /// The one space every segment of `expr` belongs to (`None`: it names
    /// none).
    fn space_of(&self, expr: &SetExpr) -> DfResult<Option<Arc<Space>>> {
        let mut space: Option<Arc<Space>> = None;
        for n in expr.names() {
            let (seg, s) = self.segment(n)?;
            if let Some(first) = &space
                && !Arc::ptr_eq(first, &s)
            {
                return Err(invalid(format!(
                    "segment \"{}\" is a set of another profile space than the others in the expression",
                    seg.def.name
                )));
            }
            space = Some(s);
        }
        Ok(space)
    }

    /// The size of a set expression; a plain intersection or union of two
    /// segments is counted without building the result.
    pub fn count(&self, expr: &SetExpr, purpose: Option<&str>) -> DfResult<u64> {
        let Some(space) = self.space_of(expr)? else {
            return Ok(0);
        };
        if let Some(p) = purpose {
            let members = self
                .segments
                .members_of(&space, expr)
                .map_err(EngineError::into_datafusion)?;
            return Ok(members.intersection_len(&self.consenting(&space, p)?));
        }
        if let SetExpr::And(a, b) | SetExpr::Or(a, b) = expr
            && let (SetExpr::Name(x), SetExpr::Name(y)) = (&**a, &**b)
        {
            let (x, y) = (self.members(x)?.0, self.members(y)?.0);
            return Ok(if matches!(expr, SetExpr::And(..)) {
                x.intersection_len(&y)
            } else {
                x.union_len(&y)
            });
        }
        if let SetExpr::Name(n) = expr {
            return Ok(self.members(n)?.0.len());
        }
        self.segments
            .count(&space, expr)
            .map_err(EngineError::into_datafusion)
    }
}

/// Segment names fold to lower case unless quoted.
fn fold(name: &str) -> String {
    let t = name.trim();
    match t.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(q) => q.to_string(),
        None => t.to_lowercase(),
    }
}

/// `in_segment(profile_id, 'name')`.
#[derive(Debug)]
pub struct InSegment {
    cx: Context,
    signature: Signature,
}

impl InSegment {
    /// The function.
    pub fn new(cx: Context) -> Self {
        Self {
            cx,
            // Stable, not volatile: within a statement the members do not
            // change, and a stable filter may be pushed into a scan.
            signature: Signature::any(2, Volatility::Stable),
        }
    }
}

crate::udf_identity!(InSegment, "in_segment");

impl ScalarUDFImpl for InSegment {
    fn name(&self) -> &str {
        "in_segment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // The common case: a constant segment name.
        let constant = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
            | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s)))
            | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s))) => Some(s.clone()),
            _ => None,
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out: BooleanArray = match constant {
            Some(name) => membership(&arrays[0], &self.cx.members(&name)?.0)?,
            None => {
                let ids = cast(&arrays[0], &DataType::Int64)?;
                let ids = ids.as_primitive::<Int64Type>();
                let names = cast(&arrays[1], &DataType::Utf8)?;
                let names = names.as_string::<i32>();
                let mut out = Vec::with_capacity(ids.len());
                for i in 0..ids.len() {
                    if ids.is_null(i) || names.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let (members, _) = self.cx.members(names.value(i))?;
                    out.push(Some(
                        u32::try_from(ids.value(i)).is_ok_and(|id| members.contains(id)),
                    ));
                }
                out.into_iter().collect()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `profile_id` is one of a set of profiles fixed when the expression is
/// built. Not a function a statement can name: the engine builds it for
/// one plan (an incremental refresh recomputing the profiles that new rows
/// touched, [`crate::segments::incremental`]), and [`InSegmentFilter`]
/// pushes it into the scan of a source as a probe of the stored ids.
#[derive(Debug)]
pub struct InProfiles {
    /// Current profile ids.
    members: Arc<RoaringBitmap>,
    /// The stored ids that map to them.
    stored: IdSet,
    /// The storage names of the space's sources.
    sources: Vec<String>,
    signature: Signature,
}

crate::udf_identity!(InProfiles, "tessera_in_profiles", members);

impl InProfiles {
    /// `id IN members`, for `members` (current profiles) of `space`.
    pub fn expr(space: &Space, members: RoaringBitmap, id: Expr) -> Expr {
        let stored = IdSet::new(Arc::new(space.stored_ids(&members)));
        let f = Self {
            members: Arc::new(members),
            stored,
            sources: space.spec.sources.iter().map(|s| s.table.clone()).collect(),
            signature: Signature::any(1, Volatility::Stable),
        };
        let udf = tessera_sql::datafusion::logical_expr::ScalarUDF::new_from_impl(f);
        Expr::ScalarFunction(
            tessera_sql::datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(udf),
                vec![id],
            ),
        )
    }
}

impl ScalarUDFImpl for InProfiles {
    fn name(&self) -> &str {
        "tessera_in_profiles"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = membership(&arrays[0], &self.members)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Whether each profile id is one of `members` (NULL stays NULL).
fn membership(ids: &ArrayRef, members: &RoaringBitmap) -> DfResult<BooleanArray> {
    let ids = cast(ids, &DataType::Int64)?;
    Ok(ids
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.map(|id| u32::try_from(id).is_ok_and(|id| members.contains(id))))
        .collect())
}

/// `in_segment(profile_id, 'name')` pushed into the scan of a source of
/// the segment's space: the stored profile id is one of those that map to
/// a member ([`Space::stored_ids`]), which the storage engine evaluates on
/// the stored column (and through its index, if it has one) before any row
/// leaves it. The same answer as the function, NULL for a NULL id.
#[derive(Debug)]
pub struct InSegmentFilter {
    cx: Context,
    /// Per segment, the members a set was made for and the set (which
    /// builds its bitset once): reused while the members are the same.
    sets: parking_lot::Mutex<std::collections::HashMap<String, (Arc<RoaringBitmap>, IdSet)>>,
}

impl InSegmentFilter {
    /// Over one database's segments.
    pub fn new(cx: Context) -> Self {
        Self {
            cx,
            sets: Default::default(),
        }
    }

    /// The stored ids of `space` that map to `members` of segment `name`.
    /// A refresh that left them as they were (a scheduled refresh with no
    /// new rows, say) keeps the set, with the answers it kept per file.
    fn set(&self, name: &str, members: Arc<RoaringBitmap>, space: &Space) -> IdSet {
        let mut sets = self.sets.lock();
        if let Some((m, set)) = sets.get(name)
            && Arc::ptr_eq(m, &members)
        {
            return set.clone();
        }
        let ids = space.stored_ids(&members);
        let set = match sets.get(name) {
            Some((_, old)) if *old.ids() == ids => old.clone(),
            _ => IdSet::new(Arc::new(ids)),
        };
        sets.insert(name.to_string(), (members, set.clone()));
        set
    }
}

impl tessera_sql::hook::MappedFilter for InSegmentFilter {
    fn predicate(&self, table: &str, filter: &Expr) -> Option<tessera_sql::storage::Predicate> {
        let Expr::ScalarFunction(call) = filter else {
            return None;
        };
        if let Some(f) = call.func.inner().as_ref().downcast_ref::<InProfiles>() {
            return match call.args.as_slice() {
                [Expr::Column(c)]
                    if c.name == crate::unify::PROFILE_ID
                        && f.sources.iter().any(|s| s == table) =>
                {
                    Some(tessera_sql::storage::Predicate::InSet {
                        column: c.name.clone(),
                        set: f.stored.clone(),
                    })
                }
                _ => None,
            };
        }
        if call.name() != "in_segment" {
            return None;
        }
        let [Expr::Column(c), name] = call.args.as_slice() else {
            return None;
        };
        let name = super::literal_text("in_segment", name).ok()?;
        if c.name != crate::unify::PROFILE_ID {
            return None;
        }
        // An unknown segment is left to the function, which says so.
        let (members, space) = self.cx.members(&name).ok()?;
        if !space.spec.sources.iter().any(|s| s.table == table) {
            return None;
        }
        Some(tessera_sql::storage::Predicate::InSet {
            column: c.name.clone(),
            set: self.set(&name, members, &space),
        })
    }
}

/// `segment_count('expression')`.
#[derive(Debug)]
pub struct SegmentCount {
    cx: Context,
    signature: Signature,
}

impl SegmentCount {
    /// The function.
    pub fn new(cx: Context) -> Self {
        Self {
            cx,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Volatile,
            ),
        }
    }
}

crate::udf_identity!(SegmentCount, "segment_count");

impl ScalarUDFImpl for SegmentCount {
    fn name(&self) -> &str {
        "segment_count"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    /// `segment_count('expression' [, 'purpose'])`: with a purpose, only
    /// the members consenting to it count.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts: Vec<_> = arrays
            .iter()
            .map(|a| cast(a, &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        let exprs = texts[0].as_string::<i32>();
        let purposes = texts.get(1).map(|p| p.as_string::<i32>());
        let mut out = Vec::with_capacity(rows);
        for i in 0..exprs.len() {
            let purpose = match purposes {
                Some(p) if p.is_null(i) => None,
                Some(p) => Some(p.value(i)),
                None => None,
            };
            if exprs.is_null(i) {
                out.push(None);
                continue;
            }
            let e = crate::segments::expr::parse(exprs.value(i))
                .map_err(EngineError::into_datafusion)?;
            out.push(Some(self.cx.count(&e, purpose)? as i64));
        }
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if all_scalar && let [one] = out.as_slice() {
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(*one)));
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

fn table(
    function: &str,
    a: &TableFunctionArgs,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> DfResult<Arc<dyn TableProvider>> {
    super::call_table(function, a.exprs(), RecordBatch::try_new(schema, columns)?)
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn args<'a>(f: &str, a: &'a TableFunctionArgs, n: usize) -> DfResult<&'a [Expr]> {
    let e = a.exprs();
    if e.len() != n {
        return Err(invalid(format!(
            "{f} takes {n} argument(s), got {}",
            e.len()
        )));
    }
    Ok(e)
}

/// `segment('name')`.
#[derive(Debug)]
pub struct SegmentMembers(pub Context);

impl TableFunctionImpl for SegmentMembers {
    fn call_with_args(&self, a: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let e = a.exprs();
        if e.is_empty() || e.len() > 2 {
            return Err(invalid(format!(
                "segment takes a name and optionally a purpose, got {} argument(s)",
                e.len()
            )));
        }
        let (members, space) = self.0.members(&literal_text("segment", &e[0])?)?;
        // With a purpose: only the members consenting to it.
        let members = match e.get(1) {
            Some(Expr::Literal(v, _)) if v.is_null() => members,
            Some(p) => {
                let purpose = literal_text("segment", p)?;
                Arc::new(members.as_ref() & &self.0.consenting(&space, &purpose)?)
            }
            None => members,
        };
        let table =
            ProfileTable::new(space, ProfileTableKind::Profiles).with_pii(self.0.pii.clone());
        let rows = table
            .profile_rows_for(&members)
            .map_err(EngineError::into_datafusion)?;
        // Masked at scan for readers without pii_reader, as the profile
        // table is.
        Ok(Arc::new(crate::profiles::Computed(
            crate::profiles::Fixed {
                batch: super::call_batch("segment", a.exprs(), rows)?,
                source: table,
            },
        )))
    }
}

/// `segment_history('name')`.
#[derive(Debug)]
pub struct SegmentHistory(pub Context);

impl TableFunctionImpl for SegmentHistory {
    fn call_with_args(&self, a: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let e = args("segment_history", &a, 1)?;
        let name = fold(&literal_text("segment_history", &e[0])?);
        let versions = self
            .0
            .segments
            .history_of(&self.0.spaces, &name)
            .map_err(EngineError::into_datafusion)?;
        // Compared as profiles are now: a merge is neither an entry nor an exit.
        let (_, space) = self.0.segment(&name)?;
        let mapped: Vec<RoaringBitmap> = versions
            .iter()
            .map(|v| as_current(&space, &v.members))
            .collect();
        let mut entered = Vec::new();
        let mut exited = Vec::new();
        for (i, now) in mapped.iter().enumerate() {
            match i.checked_sub(1).map(|p| &mapped[p]) {
                Some(prev) => {
                    entered.push((now - prev).len() as i64);
                    exited.push((prev - now).len() as i64);
                }
                None => {
                    entered.push(now.len() as i64);
                    exited.push(0);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("version", DataType::Int64, false),
            Field::new("refreshed_at", ts(), false),
            Field::new("seconds", DataType::Float64, false),
            Field::new("size", DataType::Int64, false),
            Field::new("entered", DataType::Int64, false),
            Field::new("exited", DataType::Int64, false),
        ]));
        table(
            "segment_history",
            &a,
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(
                    versions.iter().map(|v| v.number),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    versions.iter().map(|v| v.refreshed_at),
                )),
                Arc::new(Float64Array::from_iter_values(
                    versions.iter().map(|v| v.seconds),
                )),
                Arc::new(Int64Array::from_iter_values(
                    versions.iter().map(|v| v.members.len() as i64),
                )),
                Arc::new(Int64Array::from(entered)),
                Arc::new(Int64Array::from(exited)),
            ],
        )
    }
}

/// `segment_changes('name', since)`.
#[derive(Debug)]
pub struct SegmentChanges(pub Context);

impl TableFunctionImpl for SegmentChanges {
    fn call_with_args(&self, a: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let e = args("segment_changes", &a, 2)?;
        let name = fold(&literal_text("segment_changes", &e[0])?);
        let (_, space) = self.0.segment(&name)?;
        let versions = self
            .0
            .segments
            .history_of(&self.0.spaces, &name)
            .map_err(EngineError::into_datafusion)?;
        let Some(latest) = versions.last() else {
            return Err(invalid(format!("segment \"{name}\" has no version yet")));
        };
        // `since`: a version number, or a time (the version then).
        let since = match &e[1] {
            Expr::Literal(v, _) if v.data_type().is_integer() => {
                let n: i64 = v.to_string().parse().map_err(|_| invalid("since".into()))?;
                if n == 0 {
                    None
                } else {
                    Some(versions.iter().find(|v| v.number == n).ok_or_else(|| {
                        invalid(format!(
                            "segment \"{name}\" has no version {n} (it has 1 to {})",
                            latest.number
                        ))
                    })?)
                }
            }
            other => {
                let text = literal_text("segment_changes", other)?;
                let at = ScalarValue::Utf8(Some(text.clone()))
                    .cast_to(&ts())
                    .map_err(|_| {
                        invalid(format!(
                            "segment_changes: since is a version number or a timestamp, got '{text}'"
                        ))
                    })?;
                let ScalarValue::TimestampMicrosecond(Some(at), _) = at else {
                    return Err(invalid(format!("segment_changes: '{text}' is not a time")));
                };
                versions.iter().rev().find(|v| v.refreshed_at <= at)
            }
        };
        let now = as_current(&space, &latest.members);
        let then = since
            .map(|v| as_current(&space, &v.members))
            .unwrap_or_default();
        let entered = &now - &then;
        let exited = &then - &now;
        let mut ids: Vec<i64> = Vec::new();
        let mut change: Vec<&str> = Vec::new();
        for id in entered.iter() {
            ids.push(i64::from(id));
            change.push("entered");
        }
        for id in exited.iter() {
            ids.push(i64::from(id));
            change.push("exited");
        }
        let n = ids.len();
        let schema = Arc::new(Schema::new(vec![
            Field::new("profile_id", DataType::Int64, false),
            Field::new("change", DataType::Utf8, false),
            Field::new("at", ts(), false),
            Field::new("version", DataType::Int64, false),
        ]));
        table(
            "segment_changes",
            &a,
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(change)),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    latest.refreshed_at;
                    n
                ])),
                Arc::new(Int64Array::from(vec![latest.number; n])),
            ],
        )
    }
}

/// `segment_overlap('a', 'b')`.
#[derive(Debug)]
pub struct SegmentOverlap(pub Context);

impl TableFunctionImpl for SegmentOverlap {
    fn call_with_args(&self, a: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let e = args("segment_overlap", &a, 2)?;
        let (x, _) = self.0.members(&literal_text("segment_overlap", &e[0])?)?;
        let (y, _) = self.0.members(&literal_text("segment_overlap", &e[1])?)?;
        let both = x.intersection_len(&y);
        let schema = Arc::new(Schema::new(vec![
            Field::new("only_a", DataType::Int64, false),
            Field::new("both", DataType::Int64, false),
            Field::new("only_b", DataType::Int64, false),
        ]));
        table(
            "segment_overlap",
            &a,
            schema,
            vec![
                Arc::new(Int64Array::from(vec![(x.len() - both) as i64])),
                Arc::new(Int64Array::from(vec![both as i64])),
                Arc::new(Int64Array::from(vec![(y.len() - both) as i64])),
            ],
        )
    }
}

/// A stable 64-bit mix of a seed and a profile id (SplitMix64's finaliser):
/// the same profile lands on the same side for the same seed, forever.
fn bucket(seed: u64, id: u32) -> u64 {
    let mut z = seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `segment_sample('name', fraction, seed)`.
#[derive(Debug)]
pub struct SegmentSample(pub Context);

impl TableFunctionImpl for SegmentSample {
    fn call_with_args(&self, a: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let e = args("segment_sample", &a, 3)?;
        let (members, _) = self.0.members(&literal_text("segment_sample", &e[0])?)?;
        let fraction: f64 = literal_text("segment_sample", &e[1])?
            .parse()
            .ok()
            .filter(|f: &f64| (0.0..=1.0).contains(f))
            .ok_or_else(|| {
                invalid("segment_sample: the fraction is a number from 0 to 1".into())
            })?;
        let seed: u64 = literal_text("segment_sample", &e[2])?
            .parse::<i64>()
            .map(|s| s as u64)
            .map_err(|_| invalid("segment_sample: the seed is a whole number".into()))?;
        let cut = (fraction * u64::MAX as f64) as u64;
        let ids: Vec<i64> = members
            .iter()
            .filter(|id| fraction >= 1.0 || bucket(seed, *id) < cut)
            .map(i64::from)
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "profile_id",
            DataType::Int64,
            false,
        )]));
        table(
            "segment_sample",
            &a,
            schema,
            vec![Arc::new(Int64Array::from(ids))],
        )
    }
}

/// The `segments` table: one row per segment.
#[derive(Debug)]
pub struct SegmentsTable {
    cx: Context,
    schema: SchemaRef,
}

impl SegmentsTable {
    /// Over one database's segments.
    pub fn new(cx: Context) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("space", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("refresh", DataType::Utf8, false),
            Field::new("size", DataType::Int64, false),
            Field::new("version", DataType::Int64, false),
            Field::new("last_refresh", ts(), true),
            Field::new("refresh_seconds", DataType::Float64, false),
            Field::new(
                "depends_on",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            ),
            Field::new("last_refresh_kind", DataType::Utf8, true),
            Field::new("next_refresh", ts(), true),
            Field::new("last_error", DataType::Utf8, true),
        ]));
        Self { cx, schema }
    }

    fn rows(&self) -> DfResult<RecordBatch> {
        let all = self.cx.segments.all();
        let sizes: Vec<i64> = all
            .iter()
            .map(|s| match self.cx.spaces.get(&s.def.space) {
                Some(space) => s.members(&space).len() as i64,
                None => s.latest.members.len() as i64,
            })
            .collect();
        let mut deps = ListBuilder::new(StringBuilder::new());
        for s in &all {
            for d in &s.def.depends_on {
                deps.values().append_value(d);
            }
            deps.append(true);
        }
        let space_name = |s: &str| s.strip_prefix("public.").unwrap_or(s).to_string();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|s| s.def.name.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|s| space_name(&s.def.space)),
                )),
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|s| s.def.body.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    all.iter().map(|s| s.def.policy().to_string()),
                )),
                Arc::new(Int64Array::from(sizes)),
                Arc::new(Int64Array::from_iter_values(
                    all.iter().map(|s| s.latest.number),
                )),
                Arc::new(TimestampMicrosecondArray::from(
                    all.iter()
                        .map(|s| (s.latest.number > 0).then_some(s.latest.refreshed_at))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from_iter_values(
                    all.iter().map(|s| s.latest.seconds),
                )),
                Arc::new(deps.finish()),
                Arc::new(StringArray::from(
                    all.iter()
                        .map(|s| s.kind.map(|k| k.as_str()))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMicrosecondArray::from(
                    all.iter().map(|s| s.next_scheduled()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    all.iter()
                        .map(|s| s.last_error.lock().clone())
                        .collect::<Vec<_>>(),
                )),
            ],
        )?)
    }
}

impl crate::profiles::ComputedRows for SegmentsTable {
    fn columns(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn compute(&self) -> DfResult<RecordBatch> {
        self.rows()
    }
}
