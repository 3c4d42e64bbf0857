//! OIDs that stay the same across connections and restarts.
//!
//! `datafusion-pg-catalog` numbers databases, schemas and relations from a
//! counter in the order a query first finds them, so after a restart (or
//! a table created earlier in name order) a table may come back under
//! another OID; clients that cache OIDs (pgjdbc, Npgsql, DBeaver, psql's
//! `\d` between two queries) then look at the wrong object.
//!
//! Tessera keeps its own numbering in the database's catalog (extension
//! key [`KEY`], a postcard-encoded [`OidMap`], see `docs/server.md`): each
//! database, schema and relation gets the next number from 16384 the first
//! time a client sees it, durably before the client does, and keeps it.
//! [`StableCatalog`] wraps the `pg_catalog` schema: its `pg_class`,
//! `pg_namespace`, `pg_attribute` and `pg_database` are the crate's rows
//! with every OID column rewritten from the crate's numbering to Tessera's
//! (the crate's own numbers only serve to tell which row is which object
//! within one query). `pg_catalog` itself keeps PostgreSQL's OID 11, which
//! the crate's static tables refer to.
//!
//! A relation is known by its schema and name: one dropped and created
//! again under the same name gets its old OID back (PostgreSQL would give
//! a new one; no client depends on that).
//!
//! `pg_proc` is the crate's (PostgreSQL's built-in functions, in
//! `pg_catalog`) followed by Tessera's own functions
//! ([`tessera_engine::functions::FUNCTIONS`]) in the default schema, one
//! row per signature, so that psql's `\df` and a driver's function
//! metadata list `unify`, `in_segment`, `segment_count`, ….

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tessera_engine::WeakDatabase;
use tessera_engine::functions::{FUNCTIONS, FunctionKind};
use tessera_sql::datafusion::arrow::array::{
    ArrayRef, AsArray, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    new_null_array,
};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use tessera_sql::datafusion::catalog::{SchemaProvider, Session, TableProvider};
use tessera_sql::datafusion::common::{DataFusionError, ScalarValue};
use tessera_sql::datafusion::datasource::TableType;
use tessera_sql::datafusion::datasource::memory::MemorySourceConfig;
use tessera_sql::datafusion::logical_expr::Expr;
use tessera_sql::datafusion::physical_plan::{ExecutionPlan, collect};

type DfResult<T> = std::result::Result<T, DataFusionError>;

/// The catalog extension key of the numbering.
pub const KEY: &str = "pg:oids";

/// The first OID handed out (PostgreSQL's first user OID).
pub const FIRST: u32 = 16384;

/// The OID of `pg_catalog` (PostgreSQL's; the static tables refer to it).
const PG_CATALOG_OID: i32 = 11;

/// What an OID names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Object {
    /// A database (`pg_database`).
    Database(String),
    /// A schema (`pg_namespace`).
    Schema(String),
    /// A table or view, by schema and name (`pg_class`).
    Relation(String, String),
    /// One of Tessera's functions, by its signature (`pg_proc`).
    Function(String),
    /// A role (`pg_roles`), except the owner (see [`OWNER_OID`]).
    Role(String),
}

/// The OID of the role that owns every object: PostgreSQL's bootstrap
/// superuser's, which the crate's static rows (`pg_type.typowner`,
/// `pg_proc.proowner`, …) refer to. Tessera keeps no owner per object; the
/// owner shown is the superuser created with the database ([`OWNER_KEY`]).
pub const OWNER_OID: i32 = 10;

/// The catalog extension key naming the owner role (UTF-8 bytes).
pub const OWNER_KEY: &str = "pg:owner";

/// The numbering, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OidMap {
    /// The next OID to hand out.
    pub next: u32,
    /// Every object ever numbered.
    pub oids: BTreeMap<Object, u32>,
}

/// The numbering of one database, loaded on first use.
#[derive(Debug)]
pub struct StableOids {
    db: WeakDatabase,
    map: Mutex<Option<OidMap>>,
}

impl StableOids {
    /// The numbering kept in `db`.
    pub fn new(db: WeakDatabase) -> StableOids {
        StableOids {
            db,
            map: Mutex::new(None),
        }
    }

    /// The OID of each of `objects`, numbering (durably) those seen for
    /// the first time.
    pub fn resolve<'a>(
        &self,
        objects: impl IntoIterator<Item = &'a Object>,
    ) -> DfResult<HashMap<Object, i32>> {
        let db = self
            .db
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the database is closed".into()))?;
        let mut guard = self.map.lock();
        let map = match guard.as_mut() {
            Some(map) => map,
            None => {
                let map = match db.engine().extension(KEY) {
                    Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| {
                        DataFusionError::Execution(format!(
                            "the catalog's OID numbering ({KEY}) cannot be read: {e}"
                        ))
                    })?,
                    None => OidMap::default(),
                };
                guard.insert(map)
            }
        };
        let mut changed = map.clone();
        changed.next = changed.next.max(FIRST);
        let mut out = HashMap::new();
        for object in objects {
            let oid = match changed.oids.get(object) {
                Some(oid) => *oid,
                None => {
                    let oid = changed.next;
                    changed.next = oid
                        .checked_add(1)
                        .filter(|n| *n <= i32::MAX as u32)
                        .ok_or_else(|| {
                            DataFusionError::Execution("no OIDs are left to number objects".into())
                        })?;
                    changed.oids.insert(object.clone(), oid);
                    oid
                }
            };
            out.insert(object.clone(), oid as i32);
        }
        if changed.oids.len() != map.oids.len() {
            // Durable before any client sees the new numbers.
            let bytes = postcard::to_stdvec(&changed)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            db.engine()
                .set_extension(KEY, Some(bytes))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            *map = changed;
        }
        Ok(out)
    }
}

impl StableOids {
    /// The owner role: the one recorded when the database got its first
    /// superuser, or (a database from before that was recorded) the first
    /// superuser by name.
    fn owner(&self, db: &tessera_engine::Database) -> Option<String> {
        let roles = super::roles::Roles::new(db);
        db.engine()
            .extension(OWNER_KEY)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|name| roles.get(name).is_some())
            .or_else(|| {
                roles
                    .all()
                    .into_iter()
                    .filter(|r| r.superuser)
                    .map(|r| r.name)
                    .min()
            })
    }

    /// Every role's OID, by name.
    pub fn roles(&self) -> DfResult<HashMap<String, i32>> {
        let db = self
            .db
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the database is closed".into()))?;
        let owner = self.owner(&db);
        let others: Vec<Object> = super::roles::Roles::new(&db)
            .all()
            .into_iter()
            .filter(|r| Some(&r.name) != owner.as_ref())
            .map(|r| Object::Role(r.name))
            .collect();
        let stable = self.resolve(&others)?;
        let mut out: HashMap<String, i32> = stable
            .into_iter()
            .filter_map(|(o, oid)| match o {
                Object::Role(name) => Some((name, oid)),
                _ => None,
            })
            .collect();
        if let Some(owner) = owner {
            out.insert(owner, OWNER_OID);
        }
        Ok(out)
    }
}

/// The `pg_catalog` schema with Tessera's OIDs (see the module's text).
#[derive(Debug)]
pub struct StableCatalog {
    inner: Arc<dyn SchemaProvider>,
    oids: Arc<StableOids>,
}

/// The relations whose rows are Tessera's: the four whose OIDs are
/// rewritten, and `pg_proc`.
const NUMBERED: [&str; 6] = [
    "pg_class",
    "pg_namespace",
    "pg_attribute",
    "pg_database",
    "pg_proc",
    "pg_roles",
];

impl StableCatalog {
    /// `inner` (the crate's `pg_catalog`) numbered by `oids`.
    pub fn new(inner: Arc<dyn SchemaProvider>, oids: Arc<StableOids>) -> StableCatalog {
        StableCatalog { inner, oids }
    }
}

#[async_trait::async_trait]
impl SchemaProvider for StableCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        let table = self.inner.table(name).await?;
        match (NUMBERED.iter().find(|n| **n == lower), table) {
            (Some(which), Some(table)) => {
                let inner_schema = table.schema();
                let schema = if *which == "pg_proc" {
                    with_name_lists(&inner_schema)
                } else {
                    Arc::clone(&inner_schema)
                };
                Ok(Some(Arc::new(Numbered {
                    which,
                    catalog: Arc::clone(&self.inner),
                    oids: Arc::clone(&self.oids),
                    schema,
                    inner_schema,
                    kind: table.table_type(),
                })))
            }
            (_, table) => Ok(table),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// One of [`NUMBERED`], renumbered.
#[derive(Debug)]
struct Numbered {
    which: &'static str,
    catalog: Arc<dyn SchemaProvider>,
    oids: Arc<StableOids>,
    /// The columns shown.
    schema: SchemaRef,
    /// The crate's columns (`pg_proc.proargnames` is text there).
    inner_schema: SchemaRef,
    kind: TableType,
}

/// `pg_proc`'s argument names as PostgreSQL has them, `text[]` (drivers
/// read an array), where the crate keeps text.
const NAME_LISTS: &str = "proargnames";

fn with_name_lists(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == NAME_LISTS {
                Field::new(NAME_LISTS, DataType::new_list(DataType::Utf8, true), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` (of the crate's `pg_proc`) with its argument names as lists:
/// `{kind,value}` (PostgreSQL's text form, Tessera's rows) or
/// `['min', 'max']` (the crate's) becomes `[kind, value]`.
fn name_lists(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    let i = batch.schema().index_of(NAME_LISTS)?;
    let texts = cast(&columns[i], &DataType::Utf8)?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for v in texts.as_string::<i32>().iter() {
        match v {
            Some(v) => {
                for name in v
                    .trim_matches(|c| matches!(c, '{' | '}' | '[' | ']'))
                    .split(',')
                    .map(|n| n.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace()))
                    .filter(|n| !n.is_empty())
                {
                    out.values().append_value(name);
                }
                out.append(true);
            }
            None => out.append(false),
        }
    }
    columns[i] = Arc::new(out.finish());
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

impl Numbered {
    /// Every row of the crate's table `name`.
    async fn rows(&self, state: &dyn Session, name: &str) -> DfResult<Vec<RecordBatch>> {
        let table = self
            .catalog
            .table(name)
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("pg_catalog.{name} is missing")))?;
        let plan = table.scan(state, None, &[], None).await?;
        collect(plan, state.task_ctx()).await
    }
}

impl Numbered {
    /// `pg_proc`'s rows of Tessera's functions: one per signature, in the
    /// default schema, every column not said here at its default.
    async fn functions(&self, state: &dyn Session) -> DfResult<RecordBatch> {
        let mut types: HashMap<String, i32> = HashMap::new();
        for b in self.rows(state, "pg_type").await? {
            let names = texts(&b, "typname")?;
            for (oid, name) in ints(&b, "oid")?.iter().zip(names) {
                if let Some(oid) = oid {
                    types.entry(name).or_insert(oid);
                }
            }
        }
        let type_oid = |name: &str| {
            types.get(name).copied().ok_or_else(|| {
                DataFusionError::Plan(format!("pg_type has no type {name} (a function's)"))
            })
        };
        let schema = Object::Schema(tessera_sql::DEFAULT_SCHEMA.to_string());
        let signatures: Vec<Object> = FUNCTIONS
            .iter()
            .map(|f| {
                let args: Vec<&str> = f.arguments.iter().map(|(_, t)| *t).collect();
                Object::Function(format!("{}({})", f.name, args.join(",")))
            })
            .collect();
        let mut wanted: Vec<&Object> = signatures.iter().chain([&schema]).collect();
        wanted.sort();
        let stable = self.oids.resolve(wanted)?;
        let mut columns: HashMap<&str, Vec<String>> = HashMap::new();
        for (f, signature) in FUNCTIONS.iter().zip(&signatures) {
            let mut put = |column: &'static str, value: String| {
                columns.entry(column).or_default().push(value);
            };
            let args = f
                .arguments
                .iter()
                .map(|(_, t)| type_oid(t).map(|o| o.to_string()))
                .collect::<DfResult<Vec<_>>>()?;
            put("oid", stable[signature].to_string());
            put("proname", f.name.to_string());
            put("pronamespace", stable[&schema].to_string());
            put("proowner", "10".into());
            put("prolang", "12".into());
            put("procost", "1".into());
            let (prokind, prorows) = match f.kind {
                FunctionKind::Aggregate => ("a", "0"),
                FunctionKind::Table => ("f", "1000"),
                FunctionKind::Scalar => ("f", "0"),
            };
            put("prorows", prorows.into());
            put("provariadic", "0".into());
            put("prosupport", "-".into());
            put("prokind", prokind.into());
            put("proretset", (f.kind == FunctionKind::Table).to_string());
            put("provolatile", f.volatility.to_string());
            put("proparallel", "s".into());
            put("pronargs", f.arguments.len().to_string());
            put("pronargdefaults", "0".into());
            put("prorettype", type_oid(f.result)?.to_string());
            put("proargtypes", args.join(" "));
            put(
                "proargnames",
                format!(
                    "{{{}}}",
                    f.arguments
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
            put("prosrc", f.name.to_string());
        }
        let n = FUNCTIONS.len();
        let arrays = self
            .inner_schema
            .fields()
            .iter()
            .map(|field| {
                let defaults = || -> DfResult<ArrayRef> {
                    if field.is_nullable() {
                        Ok(new_null_array(field.data_type(), n))
                    } else {
                        ScalarValue::new_default(field.data_type())?.to_array_of_size(n)
                    }
                };
                match columns.remove(field.name().as_str()) {
                    // A value that does not fit the column's type (a list
                    // where a client expects text, say) is left at its
                    // default rather than made up.
                    Some(values) => {
                        let text: ArrayRef = Arc::new(StringArray::from(values));
                        cast(&text, field.data_type()).or_else(|_| defaults())
                    }
                    None => defaults(),
                }
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(RecordBatch::try_new(
            Arc::clone(&self.inner_schema),
            arrays,
        )?)
    }
}

/// The values of column `name` of `batch` as 32-bit integers.
fn ints<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a Int32Array> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("pg_catalog has no column {name}")))?;
    column
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| DataFusionError::Plan(format!("{name} is not an OID column")))
}

/// The values of text column `name` of `batch`.
fn texts(batch: &RecordBatch, name: &str) -> DfResult<Vec<String>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("pg_catalog has no column {name}")))?;
    let column = cast(column, &DataType::Utf8)?;
    Ok(column
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

/// `batch` with column `name` replaced by `values`.
fn replace(batch: &RecordBatch, name: &str, values: Vec<Option<i32>>) -> DfResult<RecordBatch> {
    let i = batch.schema().index_of(name)?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[i] = Arc::new(Int32Array::from(values));
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The crate's schema numbers, by the schema's name.
fn schema_names(batches: &[RecordBatch]) -> DfResult<HashMap<i32, String>> {
    let mut out = HashMap::new();
    for b in batches {
        let names = texts(b, "nspname")?;
        for (oid, name) in ints(b, "oid")?.iter().zip(names) {
            if let Some(oid) = oid {
                out.insert(oid, name);
            }
        }
    }
    Ok(out)
}

/// The crate's relation numbers, by the relation's schema and name.
fn relation_names(
    batches: &[RecordBatch],
    schemas: &HashMap<i32, String>,
) -> DfResult<HashMap<i32, Object>> {
    let mut out = HashMap::new();
    for b in batches {
        let names = texts(b, "relname")?;
        let spaces = ints(b, "relnamespace")?;
        for ((oid, space), name) in ints(b, "oid")?.iter().zip(spaces.iter()).zip(names) {
            if let (Some(oid), Some(schema)) = (oid, space.and_then(|s| schemas.get(&s))) {
                out.insert(oid, Object::Relation(schema.clone(), name));
            }
        }
    }
    Ok(out)
}

/// Rewrites `column` of every batch through `objects` (the crate's number
/// → object) and `stable` (object → Tessera's number). Numbers of objects
/// not found stay as they were (PostgreSQL's own, such as 11).
fn renumber(
    batches: Vec<RecordBatch>,
    column: &str,
    objects: &HashMap<i32, Object>,
    stable: &HashMap<Object, i32>,
) -> DfResult<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| {
            let values = ints(b, column)?
                .iter()
                .map(|v| {
                    v.map(|v| {
                        objects
                            .get(&v)
                            .and_then(|o| stable.get(o))
                            .copied()
                            .unwrap_or(v)
                    })
                })
                .collect();
            replace(b, column, values)
        })
        .collect()
}

#[async_trait::async_trait]
impl TableProvider for Numbered {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.kind
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.shown(state).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[rows],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}

impl Numbered {
    /// The rows shown: the crate's, renumbered (and for `pg_proc`, with
    /// Tessera's functions).
    async fn shown(&self, state: &dyn Session) -> DfResult<Vec<RecordBatch>> {
        let rows = self.rows(state, self.which).await?;
        if self.which == "pg_proc" {
            let mut rows = rows;
            rows.push(self.functions(state).await?);
            return rows.iter().map(|b| name_lists(b, &self.schema)).collect();
        }
        if self.which == "pg_roles" {
            let roles = self.oids.roles()?;
            return rows
                .iter()
                .map(|b| {
                    let oids = texts(b, "rolname")?
                        .iter()
                        .map(|name| roles.get(name).copied())
                        .collect();
                    replace(b, "oid", oids)
                })
                .collect();
        }
        let spaces = if self.which == "pg_namespace" {
            rows.clone()
        } else {
            self.rows(state, "pg_namespace").await?
        };
        let schemas = schema_names(&spaces)?;
        let mut objects: HashMap<i32, Object> = schemas
            .iter()
            .filter(|(oid, _)| **oid != PG_CATALOG_OID)
            .map(|(oid, name)| (*oid, Object::Schema(name.clone())))
            .collect();
        let columns: &[&str] = match self.which {
            "pg_class" => {
                objects.extend(relation_names(&rows, &schemas)?);
                &["oid", "relnamespace", "relfilenode"]
            }
            "pg_attribute" => {
                let classes = self.rows(state, "pg_class").await?;
                objects.extend(relation_names(&classes, &schemas)?);
                &["attrelid"]
            }
            "pg_database" => {
                for b in &rows {
                    let names = texts(b, "datname")?;
                    for (oid, name) in ints(b, "oid")?.iter().zip(names) {
                        if let Some(oid) = oid {
                            objects.insert(oid, Object::Database(name));
                        }
                    }
                }
                &["oid"]
            }
            _ => &["oid"],
        };
        // Numbered in a fixed order, so that a fresh database numbers its
        // objects the same way whatever a client asks first.
        let mut wanted: Vec<&Object> = objects.values().collect();
        wanted.sort();
        let stable = self.oids.resolve(wanted)?;
        let mut rows = rows;
        for column in columns {
            rows = renumber(rows, column, &objects, &stable)?;
        }
        if self.which == "pg_class" {
            // Every relation is the owner's.
            rows = rows
                .iter()
                .map(|b| replace(b, "relowner", vec![Some(OWNER_OID); b.num_rows()]))
                .collect::<DfResult<Vec<_>>>()?;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_keeps_unknown_numbers() {
        let schema = Arc::new(tessera_sql::datafusion::arrow::datatypes::Schema::new(
            vec![tessera_sql::datafusion::arrow::datatypes::Field::new(
                "oid",
                DataType::Int32,
                true,
            )],
        ));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from(vec![
                Some(11),
                Some(16390),
                None,
            ]))],
        )
        .unwrap();
        let objects = HashMap::from([(16390, Object::Schema("public".into()))]);
        let stable = HashMap::from([(Object::Schema("public".into()), 20000)]);
        let out = renumber(vec![batch], "oid", &objects, &stable).unwrap();
        let got: Vec<Option<i32>> = ints(&out[0], "oid").unwrap().iter().collect();
        assert_eq!(got, vec![Some(11), Some(20000), None]);
    }
}
