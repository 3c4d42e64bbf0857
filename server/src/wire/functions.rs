//! What clients ask of PostgreSQL beyond the SQL Tessera already speaks:
//! the `pg_catalog` schema and its functions (from `datafusion-pg-catalog`),
//! `version()` in the form drivers parse, and per-session
//! `current_setting()` / `set_config()`.

use std::sync::{Arc, Weak};

use tessera_engine::Database;
use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringArray, StringBuilder,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Int64Type};
use tessera_sql::datafusion::common::{DataFusionError, ScalarValue};
use tessera_sql::datafusion::logical_expr::{ColumnarValue, TypeSignature, Volatility, create_udf};
use tessera_sql::datafusion::prelude::SessionContext;

use super::WireError;
use super::session::{PG_VERSION, Session};

/// The text of `version()`: SQLAlchemy and others read the PostgreSQL
/// version from its start.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (Tessera {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// The roles `pg_roles` lists.
#[derive(Debug, Clone)]
/// The roles pg_catalog shows. It lives in the database's own session,
/// so it holds the database weakly: a strong handle there would keep the
/// database open (and its directory locked) after its last user closed it.
struct RoleCatalog {
    db: tessera_engine::WeakDatabase,
}

impl RoleCatalog {
    fn roles(&self) -> Option<super::roles::Roles> {
        self.db.upgrade().map(|db| super::roles::Roles::new(&db))
    }
}

#[async_trait::async_trait]
impl datafusion_pg_catalog::pg_catalog::context::PgCatalogContextProvider for RoleCatalog {
    async fn roles(&self) -> Vec<String> {
        self.roles()
            .map(|roles| roles.all().into_iter().map(|r| r.name).collect())
            .unwrap_or_default()
    }

    async fn role(&self, name: &str) -> Option<datafusion_pg_catalog::pg_catalog::context::Role> {
        use datafusion_pg_catalog::pg_catalog::context::Role;
        let r = self.roles()?.get(name)?;
        Some(Role {
            name: r.name,
            is_superuser: r.superuser,
            can_login: r.login,
            can_create_db: false,
            can_create_role: r.superuser,
            can_create_user: r.superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}

fn argument(args: &[ColumnarValue], i: usize) -> Result<ArrayRef, DataFusionError> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    arrays
        .get(i)
        .cloned()
        .ok_or_else(|| DataFusionError::Plan("missing argument".into()))
}

/// Registers the database-wide catalog and functions, once per server.
pub fn register_database(db: &Database) -> Result<(), WireError> {
    let ctx = db.engine().context();
    if ctx
        .catalog(tessera_sql::CATALOG)
        .is_some_and(|c| c.schema("pg_catalog").is_some())
    {
        return Ok(());
    }
    datafusion_pg_catalog::setup_pg_catalog(
        ctx,
        tessera_sql::CATALOG,
        RoleCatalog { db: db.downgrade() },
    )
    .map_err(|e| WireError::Internal(format!("cannot set up pg_catalog: {e}")))?;
    // Tessera's OIDs, stable across restarts, over the crate's numbering.
    let catalog = ctx
        .catalog(tessera_sql::CATALOG)
        .ok_or_else(|| WireError::Internal("no catalog for pg_catalog".into()))?;
    if let Some(inner) = catalog.schema("pg_catalog") {
        let oids = Arc::new(super::catalog::StableOids::new(db.downgrade()));
        catalog
            .register_schema(
                "pg_catalog",
                Arc::new(super::catalog::StableCatalog::new(inner, Arc::clone(&oids))),
            )
            .map_err(|e| WireError::Internal(format!("cannot set up pg_catalog: {e}")))?;
        // A role's name by its OID (the crate answers "postgres" for any).
        ctx.register_udf(create_udf(
            "pg_get_userbyid",
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args| {
                let ids = argument(args, 0)?;
                let ids = tessera_sql::datafusion::arrow::compute::cast(&ids, &DataType::Int64)?;
                let by_oid: std::collections::HashMap<i64, String> = oids
                    .roles()?
                    .into_iter()
                    .map(|(name, oid)| (i64::from(oid), name))
                    .collect();
                let out: StringArray = ids
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|id| {
                        let id = id?;
                        Some(
                            by_oid
                                .get(&id)
                                .cloned()
                                .unwrap_or_else(|| format!("unknown (OID={id})")),
                        )
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ));
    }

    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let a = argument(args, 0)?;
            let a = a.as_primitive::<Int64Type>();
            let out: StringArray = a.iter().map(|v| v.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    // Tessera keeps no comments on objects: PostgreSQL answers NULL then.
    for (name, args) in [
        ("obj_description", vec![DataType::Int64, DataType::Utf8]),
        ("col_description", vec![DataType::Int64, DataType::Int64]),
        ("shobj_description", vec![DataType::Int64, DataType::Utf8]),
        // No function of Tessera's is written in SQL.
        ("pg_get_function_sqlbody", vec![DataType::Int64]),
    ] {
        ctx.register_udf(create_udf(
            name,
            args,
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|args| {
                let n = ColumnarValue::values_to_arrays(args)?
                    .first()
                    .map_or(1, |a| a.len());
                Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(n))))
            }),
        ));
    }
    // Every type and function lives in pg_catalog, which is always on the
    // search path.
    for name in ["pg_type_is_visible", "pg_function_is_visible"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args| {
                let a = argument(args, 0)?;
                let out: BooleanArray = (0..a.len()).map(|i| Some(!a.is_null(i))).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ));
    }
    let id = std::ptr::from_ref(db.engine()) as usize;
    for (name, kind) in [
        ("pg_table_size", Lookup::Size),
        ("pg_relation_size", Lookup::Size),
        ("pg_total_relation_size", Lookup::Size),
        ("pg_get_function_result", Lookup::FunctionResult),
        ("pg_get_function_arguments", Lookup::FunctionArguments),
        ("to_regtype", Lookup::RegType),
        ("pg_type_names", Lookup::TypeNames),
        ("pg_type_name", Lookup::TypeName),
    ] {
        ctx.register_udf(
            tessera_sql::datafusion::logical_expr::async_udf::AsyncScalarUDF::new(Arc::new(
                CatalogFunction {
                    name,
                    kind,
                    signature: tessera_sql::datafusion::logical_expr::Signature::uniform(
                        1,
                        if matches!(kind, Lookup::RegType | Lookup::TypeNames) {
                            vec![DataType::Utf8]
                        } else {
                            vec![DataType::Int32, DataType::Int64]
                        },
                        Volatility::Stable,
                    ),
                    db: DbRef(db.downgrade(), id),
                },
            ))
            .into_scalar_udf(),
        );
    }
    for positions in [true, false] {
        ctx.register_udf(tessera_sql::datafusion::logical_expr::ScalarUDF::from(
            ExpandArray::new(positions),
        ));
    }
    // `pg_get_indexdef(index [, column, pretty])`: NULL, as PostgreSQL
    // answers for an OID that is not an index's: Tessera's tables have no
    // PostgreSQL indexes, and the rows `pg_index` has (PostgreSQL's own)
    // are of relations it does not serve.
    ctx.register_udf(tessera_sql::datafusion::logical_expr::ScalarUDF::from(
        NoDefinition {
            signature: tessera_sql::datafusion::logical_expr::Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(3)],
                Volatility::Stable,
            ),
        },
    ));
    // A Tessera server is never a standby.
    ctx.register_udf(create_udf(
        "pg_is_in_recovery",
        vec![],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))))),
    ));
    Ok(())
}

/// `pg_size_pretty`: bytes in the largest unit that keeps the number at
/// least 10 (PostgreSQL's rule, with its rounding).
pub fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    for (i, unit) in UNITS.iter().enumerate() {
        // Round half away from zero when dividing by 1024.
        let next = size / 1024;
        let half = (size.unsigned_abs() % 1024) >= 512;
        let rounded = if half { next + size.signum() } else { next };
        if rounded.unsigned_abs() < 10 * 1024 || i == UNITS.len() - 1 {
            return format!("{rounded} {unit}");
        }
        size = next;
    }
    format!("{size} PB")
}

/// Registers the functions that read or change this session's settings.
pub fn register_session(ctx: &SessionContext, session: Weak<Session>) {
    ctx.register_udtf(
        "pg_session_settings",
        Arc::new(SessionSettings(Weak::clone(&session))),
    );
    let reader = Weak::clone(&session);
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args| {
            let names = argument(args, 0)?;
            let names = names.as_string::<i32>();
            let session = reader
                .upgrade()
                .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))?;
            let mut out = Vec::with_capacity(names.len());
            for n in names.iter() {
                out.push(match n {
                    Some(n) => Some(
                        session
                            .get(n)
                            .map_err(|e| DataFusionError::Execution(e.to_string()))?,
                    ),
                    None => None,
                });
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    ));
    ctx.register_udf(create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (Some(names), Some(values)) = (arrays.first(), arrays.get(1)) else {
                return Err(DataFusionError::Plan(
                    "set_config(name, value, is_local)".into(),
                ));
            };
            let names = names.as_string::<i32>();
            let values = values.as_string::<i32>();
            let session = session
                .upgrade()
                .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))?;
            let mut out = Vec::with_capacity(names.len());
            for (n, v) in names.iter().zip(values.iter()) {
                let (Some(n), Some(v)) = (n, v) else {
                    out.push(None);
                    continue;
                };
                session
                    .set(n, v)
                    .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                out.push(Some(session.get(n).unwrap_or_default()));
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_postgresql() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(i64::MIN), "-8192 PB");
        assert!(version_string().starts_with("PostgreSQL 16."));
    }
}

/// Catalog functions answered from `pg_class` / `pg_proc` (so from the
/// OIDs clients see) and from the storage engine:
/// - `pg_table_size(oid)`, `pg_relation_size(oid)`, `pg_total_relation_size(oid)`:
///   the bytes a table's files take (its segments and the rows not yet
///   written to one; Tessera's bitmap indexes live inside the segments); a
///   view takes none; an unknown OID gives NULL, as in PostgreSQL;
/// - `pg_get_function_result(oid)`: the result type (`SETOF` for a set);
/// - `pg_get_function_arguments(oid)`: the argument types (names are not
///   kept in Tessera's copy of `pg_proc`);
/// - `to_regtype(name)`: the OID of a type by name, NULL when unknown
///   (psycopg and SQLAlchemy probe for `hstore` so).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CatalogFunction {
    name: &'static str,
    kind: Lookup,
    signature: tessera_sql::datafusion::logical_expr::Signature,
    db: DbRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lookup {
    Size,
    FunctionResult,
    FunctionArguments,
    RegType,
    /// An OID vector's type names (`proargtypes::regtype[]`).
    TypeNames,
    /// A type's name (`x::regtype::text`), pseudo-types included.
    TypeName,
}

/// `pg_expand_array(v)`: the elements of an integer vector (`int2vector`
/// text such as `1 2`, or an array) with their positions, a list of
/// `(x, n)`; `unnest` of it is PostgreSQL's
/// `information_schema._pg_expandarray(v)` (the client rewrite maps one to
/// the other).
///
/// With `positions` false it is `pg_int_vector(v)`: the elements alone, an
/// array of bigint (the client rewrite reads `indoption[i]`, zero-based in
/// PostgreSQL, as `array_element(pg_int_vector(indoption), i + 1)`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    positions: bool,
    signature: tessera_sql::datafusion::logical_expr::Signature,
}

impl ExpandArray {
    fn new(positions: bool) -> Self {
        ExpandArray {
            positions,
            signature: tessera_sql::datafusion::logical_expr::Signature::any(
                1,
                Volatility::Immutable,
            ),
        }
    }

    /// The integers of each vector (as text: "1 2", "{1,2}", "[1, 2]").
    fn vectors(
        args: &[ColumnarValue],
    ) -> tessera_sql::datafusion::common::Result<Vec<Option<Vec<i64>>>> {
        use tessera_sql::datafusion::arrow::compute::cast;
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let vectors = arrays
            .first()
            .ok_or_else(|| DataFusionError::Plan("an integer vector".into()))?;
        let vectors = cast(vectors, &DataType::Utf8)?;
        vectors
            .as_string::<i32>()
            .iter()
            .map(|v| {
                v.map(|v| {
                    v.split(|c: char| !(c.is_ascii_digit() || c == '-'))
                        .filter(|e| !e.is_empty())
                        .map(|x| {
                            x.parse::<i64>().map_err(|_| {
                                DataFusionError::Execution(format!(
                                    "{v} is not a vector of integers"
                                ))
                            })
                        })
                        .collect()
                })
                .transpose()
            })
            .collect()
    }

    fn element() -> DataType {
        DataType::Struct(
            vec![
                tessera_sql::datafusion::arrow::datatypes::Field::new("x", DataType::Int64, true),
                tessera_sql::datafusion::arrow::datatypes::Field::new("n", DataType::Int64, false),
            ]
            .into(),
        )
    }
}

impl tessera_sql::datafusion::logical_expr::ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        if self.positions {
            "pg_expand_array"
        } else {
            "pg_int_vector"
        }
    }

    fn signature(&self) -> &tessera_sql::datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> tessera_sql::datafusion::common::Result<DataType> {
        Ok(if self.positions {
            DataType::new_list(Self::element(), true)
        } else {
            DataType::new_list(DataType::Int64, true)
        })
    }

    fn invoke_with_args(
        &self,
        args: tessera_sql::datafusion::logical_expr::ScalarFunctionArgs,
    ) -> tessera_sql::datafusion::common::Result<ColumnarValue> {
        use tessera_sql::datafusion::arrow::array::{ArrayBuilder, Int64Builder, StructBuilder};
        let vectors = Self::vectors(&args.args)?;
        if !self.positions {
            let mut out = ListBuilder::new(Int64Builder::new());
            for v in vectors {
                out.append_option(v.map(|v| v.into_iter().map(Some)));
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let DataType::Struct(fields) = Self::element() else {
            return Err(DataFusionError::Internal(
                "pg_expand_array's element".into(),
            ));
        };
        let builders: Vec<Box<dyn ArrayBuilder>> =
            vec![Box::new(Int64Builder::new()), Box::new(Int64Builder::new())];
        let mut out = ListBuilder::new(StructBuilder::new(fields, builders));
        for v in vectors {
            let Some(v) = v else {
                out.append(false);
                continue;
            };
            for (n, x) in v.into_iter().enumerate() {
                let element = out.values();
                for (i, value) in [x, n as i64 + 1].into_iter().enumerate() {
                    element
                        .field_builder::<Int64Builder>(i)
                        .ok_or_else(|| DataFusionError::Internal("pg_expand_array".into()))?
                        .append_value(value);
                }
                element.append(true);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `pg_session_settings()`: this session's settings as PostgreSQL's
/// `pg_settings` has them (a client's `pg_settings` is read from it: the
/// crate's view does not know the session).
#[derive(Debug)]
struct SessionSettings(Weak<Session>);

impl tessera_sql::datafusion::catalog::TableFunctionImpl for SessionSettings {
    fn call(
        &self,
        _: &[tessera_sql::datafusion::prelude::Expr],
    ) -> tessera_sql::datafusion::common::Result<
        Arc<dyn tessera_sql::datafusion::catalog::TableProvider>,
    > {
        use tessera_sql::datafusion::arrow::datatypes::{Field, Schema};
        let session = self
            .0
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))?;
        let settings = session.all();
        let text = |f: &dyn Fn(&str, &str) -> Option<String>| -> ArrayRef {
            Arc::new(
                settings
                    .iter()
                    .map(|(k, v)| f(k, v))
                    .collect::<StringArray>(),
            )
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("name", text(&|k, _| Some(k.to_string()))),
            ("setting", text(&|_, v| Some(v.to_string()))),
            (
                "unit",
                text(&|k, _| {
                    (k == "statement_timeout" || k == "lock_timeout").then(|| "ms".into())
                }),
            ),
            (
                "category",
                text(&|_, _| Some("Client Connection Defaults".into())),
            ),
            ("short_desc", text(&|_, _| None)),
            ("extra_desc", text(&|_, _| None)),
            (
                "context",
                text(&|k, _| {
                    Some(
                        if Session::read_only(k) {
                            "internal"
                        } else {
                            "user"
                        }
                        .into(),
                    )
                }),
            ),
            (
                "vartype",
                text(&|k, _| {
                    Some(
                        if k == "max_index_keys" || k == "max_identifier_length" {
                            "integer"
                        } else {
                            "string"
                        }
                        .into(),
                    )
                }),
            ),
            ("source", text(&|k, _| Some(session.source(k).into()))),
            ("min_val", text(&|_, _| None)),
            ("max_val", text(&|_, _| None)),
            ("enumvals", text(&|_, _| None)),
            ("boot_val", text(&|_, v| Some(v.to_string()))),
            ("reset_val", text(&|_, v| Some(v.to_string()))),
            ("sourcefile", text(&|_, _| None)),
            ("sourceline", text(&|_, _| None)),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let batch = tessera_sql::datafusion::arrow::array::RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )?;
        Ok(Arc::new(
            tessera_sql::datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?,
        ))
    }
}

/// `pg_get_indexdef(…)`, always NULL (see where it is registered).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoDefinition {
    signature: tessera_sql::datafusion::logical_expr::Signature,
}

impl tessera_sql::datafusion::logical_expr::ScalarUDFImpl for NoDefinition {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }

    fn signature(&self) -> &tessera_sql::datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> tessera_sql::datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: tessera_sql::datafusion::logical_expr::ScalarFunctionArgs,
    ) -> tessera_sql::datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(
            args.number_rows,
        ))))
    }
}

/// A database handle compared by identity (UDFs must be `Eq` and `Hash`).
#[derive(Debug, Clone)]
struct DbRef(tessera_engine::WeakDatabase, usize);

impl PartialEq for DbRef {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

impl Eq for DbRef {}

impl std::hash::Hash for DbRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.1.hash(state);
    }
}

impl tessera_sql::datafusion::logical_expr::ScalarUDFImpl for CatalogFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &tessera_sql::datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> tessera_sql::datafusion::common::Result<DataType> {
        Ok(match self.kind {
            Lookup::Size => DataType::Int64,
            Lookup::RegType => DataType::Int32,
            Lookup::FunctionResult | Lookup::FunctionArguments => DataType::Utf8,
            Lookup::TypeNames => DataType::new_list(DataType::Utf8, true),
            Lookup::TypeName => DataType::Utf8,
        })
    }

    fn invoke_with_args(
        &self,
        _: tessera_sql::datafusion::logical_expr::ScalarFunctionArgs,
    ) -> tessera_sql::datafusion::common::Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} is evaluated asynchronously",
            self.name
        )))
    }
}

/// The name of every type by its OID, as PostgreSQL prints it.
async fn type_names(
    ctx: &SessionContext,
) -> tessera_sql::datafusion::common::Result<std::collections::HashMap<i64, String>> {
    Ok(text_rows(
        ctx,
        "SELECT oid, format_type(oid, NULL), typname FROM pg_catalog.pg_type",
    )
    .await?
    .into_iter()
    .filter_map(|r| {
        // format_type does not name pseudo-types (anyelement, record):
        // their type name is their name.
        let oid = r.first()?.as_ref()?.parse::<i64>().ok()?;
        let name = r.get(1)?.clone().filter(|n| !n.starts_with("oid("));
        Some((oid, name.or_else(|| r.get(2)?.clone())?))
    })
    .collect())
}

/// Rows of a catalog query, every column as text.
async fn text_rows(
    ctx: &SessionContext,
    sql: &str,
) -> tessera_sql::datafusion::common::Result<Vec<Vec<Option<String>>>> {
    use tessera_sql::datafusion::arrow::compute::cast;
    let mut rows = Vec::new();
    for b in ctx.sql(sql).await?.collect().await? {
        let cols = b
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        (!c.is_null(i)).then(|| c.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait::async_trait]
impl tessera_sql::datafusion::logical_expr::async_udf::AsyncScalarUDFImpl for CatalogFunction {
    async fn invoke_async_with_args(
        &self,
        args: tessera_sql::datafusion::logical_expr::ScalarFunctionArgs,
    ) -> tessera_sql::datafusion::common::Result<ColumnarValue> {
        let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
        let out = self.lookup(&args.args).await?;
        // The async operator appends the result as a column: it must have
        // one value per row even for a constant argument.
        Ok(ColumnarValue::Array(if scalar {
            ScalarValue::try_from_array(&out, 0)?.to_array_of_size(args.number_rows)?
        } else {
            out
        }))
    }
}

impl CatalogFunction {
    /// The answers for each value of the argument.
    async fn lookup(
        &self,
        args: &[ColumnarValue],
    ) -> tessera_sql::datafusion::common::Result<ArrayRef> {
        use tessera_sql::datafusion::arrow::array::Int64Array;
        use tessera_sql::datafusion::arrow::compute::cast;
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let arg = arrays
            .first()
            .ok_or_else(|| DataFusionError::Plan(format!("{}(oid)", self.name)))?;
        let db = self
            .db
            .0
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the database is closed".into()))?;
        let engine = db.engine();
        let ctx = engine.new_session();
        let key = |r: &Vec<Option<String>>| {
            r.first()
                .cloned()
                .flatten()
                .and_then(|o| o.parse::<i64>().ok())
        };
        if self.kind == Lookup::RegType {
            let names = cast(arg, &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let mut types = std::collections::HashMap::new();
            for r in text_rows(
                &ctx,
                "SELECT oid, typname, format_type(oid, NULL) FROM pg_catalog.pg_type",
            )
            .await?
            {
                if let Some(oid) = key(&r).and_then(|o| i32::try_from(o).ok()) {
                    for name in r.iter().skip(1).flatten() {
                        types.entry(name.to_ascii_lowercase()).or_insert(oid);
                    }
                }
            }
            let out: tessera_sql::datafusion::arrow::array::Int32Array = names
                .iter()
                .map(|n| {
                    let n = n?.trim().to_ascii_lowercase();
                    let n = n.strip_prefix("pg_catalog.").unwrap_or(&n);
                    types.get(n.trim_matches('"')).copied()
                })
                .collect();
            return Ok(Arc::new(out));
        }
        if self.kind == Lookup::TypeNames {
            // An OID vector as text: "25 25", "[25, 25]" or "{25,25}".
            let types = type_names(&ctx).await?;
            let mut out = ListBuilder::new(StringBuilder::new());
            let vectors = ExpandArray::vectors(&[ColumnarValue::Array(Arc::clone(arg))])?;
            for v in vectors {
                match v {
                    Some(v) => {
                        for oid in v {
                            match types.get(&oid) {
                                Some(name) => out.values().append_value(name),
                                None => out.values().append_value(oid.to_string()),
                            }
                        }
                        out.append(true);
                    }
                    None => out.append(false),
                }
            }
            return Ok(Arc::new(out.finish()));
        }
        let oids = cast(arg, &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        if self.kind == Lookup::TypeName {
            let types = type_names(&ctx).await?;
            let out: StringArray = oids
                .iter()
                .map(|oid| {
                    let oid = oid?;
                    Some(types.get(&oid).cloned().unwrap_or_else(|| oid.to_string()))
                })
                .collect();
            return Ok(Arc::new(out));
        }
        match self.kind {
            Lookup::Size => {
                let names: std::collections::HashMap<i64, String> = text_rows(
                    &ctx,
                    "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                )
                .await?
                .into_iter()
                .filter_map(|r| {
                    let k = key(&r)?;
                    Some((k, format!("{}.{}", r.get(1)?.clone()?, r.get(2)?.clone()?)))
                })
                .collect();
                let out: Int64Array = oids
                    .iter()
                    .map(|oid| {
                        let name = names.get(&oid?)?;
                        Some(
                            engine
                                .store()
                                .table(name)
                                .map_or(0, |t| t.size_bytes() as i64),
                        )
                    })
                    .collect();
                Ok(Arc::new(out))
            }
            Lookup::FunctionResult
            | Lookup::FunctionArguments
            | Lookup::RegType
            | Lookup::TypeNames
            | Lookup::TypeName => {
                let types = type_names(&ctx).await?;
                let procs: std::collections::HashMap<i64, Vec<Option<String>>> = text_rows(
                    &ctx,
                    "SELECT oid, proretset, prorettype, proargtypes, array_to_string(proargnames, ',') \
                     FROM pg_catalog.pg_proc",
                )
                .await?
                .into_iter()
                .filter_map(|r| Some((key(&r)?, r)))
                .collect();
                let type_name = |oid: &str| {
                    oid.parse::<i64>()
                        .ok()
                        .and_then(|o| types.get(&o).cloned())
                        .unwrap_or_else(|| oid.to_string())
                };
                let out: StringArray = oids
                    .iter()
                    .map(|oid| {
                        let row = procs.get(&oid?)?;
                        let field = |i: usize| row.get(i).cloned().flatten();
                        Some(match self.kind {
                            Lookup::FunctionResult
                            | Lookup::Size
                            | Lookup::RegType
                            | Lookup::TypeNames
                            | Lookup::TypeName => {
                                let setof = matches!(field(1).as_deref(), Some("true" | "t"));
                                let ret = type_name(&field(2)?);
                                if setof { format!("SETOF {ret}") } else { ret }
                            }
                            _ => {
                                // PostgreSQL names the arguments that have
                                // names: `kind text, value text`.
                                let names = field(4).unwrap_or_default();
                                let names: Vec<&str> = names
                                    .trim_matches(|c| c == '{' || c == '}')
                                    .split(',')
                                    .filter(|n| !n.is_empty())
                                    .collect();
                                field(3)
                                    .unwrap_or_default()
                                    .split_whitespace()
                                    .enumerate()
                                    .map(|(i, t)| match names.get(i) {
                                        Some(n) => format!("{n} {}", type_name(t)),
                                        None => type_name(t),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        })
                    })
                    .collect();
                Ok(Arc::new(out))
            }
        }
    }
}
