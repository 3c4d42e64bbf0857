//! Statements from the wire: simple and extended protocol, COPY, cursors,
//! session commands, and the checks of what a role may do.
//!
//! Every statement is parsed by Tessera's parser (so `UNIFY`, `CREATE
//! SEGMENT`, `REFRESH SEGMENTS` are understood); queries are then rewritten
//! by `datafusion-pg-catalog`'s compatibility rules (the catalog queries of
//! psql, JDBC and others) and planned in the connection's own DataFusion
//! session. Everything that changes data goes through
//! [`Database::run_async`](tessera_engine::Database::run_async), the same
//! path as the embedded API.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::NoticeResponse;
use tessera_engine::QueryStream;
use tessera_sql::datafusion::arrow::array::{RecordBatch, StringArray};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tessera_sql::datafusion::common::tree_node::TreeNodeRecursion;
use tessera_sql::datafusion::common::{ParamValues, ScalarValue};
use tessera_sql::datafusion::logical_expr::LogicalPlan;
use tessera_sql::datafusion::sql::sqlparser::ast;
use tessera_sql::parser::Statement;

use super::encode::{self, CopyText};
use super::roles::{self, Privilege};
use super::session::{CopyIn, Cursor, Session};
use super::{Shared, WireError};

type Result<T> = std::result::Result<T, WireError>;

/// A statement prepared by `Parse`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement.
    pub statement: Statement,
    /// Parameter types, by position (`None`: not inferred).
    pub params: Vec<Option<DataType>>,
    /// The result's columns (`None`: no rows).
    pub result: Option<SchemaRef>,
}

/// Parses statements for both protocols.
#[derive(Debug)]
pub struct Parser {
    shared: Arc<Shared>,
    compat: datafusion_pg_catalog::sql::PostgresCompatibilityParser,
}

/// psql's `\d+` lists a table's storage options and those of its TOAST
/// table (with a correlated `unnest` DataFusion cannot plan). Tessera's
/// tables have neither (`reloptions` NULL, `reltoastrelid` 0), so the
/// expression is exactly NULL.
const TOAST_OPTIONS: &str = "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')";

fn is_query(s: &ast::Statement) -> bool {
    matches!(s, ast::Statement::Query(_) | ast::Statement::Explain { .. })
}

impl Parser {
    /// Statements of `sql`, in order. Queries take the compatibility
    /// rewrites that let DataFusion plan PostgreSQL clients' catalog SQL.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let rewritten;
        let sql = if sql.contains(TOAST_OPTIONS) {
            rewritten = sql.replace(TOAST_OPTIONS, "CAST(NULL AS TEXT)");
            rewritten.as_str()
        } else {
            sql
        };
        let statements = match tessera_sql::parser::parse(sql) {
            Ok(s) => s,
            Err(e) => {
                // Some client queries parse only after the compatibility
                // parser's substitutions.
                return match self.compat.parse(sql) {
                    Ok(v) if !v.is_empty() => {
                        Ok(v.into_iter().map(|s| Statement::Sql(Box::new(s))).collect())
                    }
                    _ => Err(e.into()),
                };
            }
        };
        let plain = statements.iter().all(|s| matches!(s, Statement::Sql(_)));
        let compat = if plain
            && statements
                .iter()
                .any(|s| matches!(s, Statement::Sql(q) if is_query(q) && reads_catalog(q)))
        {
            self.compat
                .parse(sql)
                .ok()
                .filter(|v| v.len() == statements.len())
        } else {
            None
        };
        Ok(statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                // Only queries over PostgreSQL's catalog are rewritten: some
                // of the compatibility rules trade exactness for plannability
                // (one replaces subqueries in a select list by NULL), which
                // is right for a client's catalog probe and wrong for data.
                Statement::Sql(q) if is_query(&q) && reads_catalog(&q) => {
                    let mut q = match compat.as_ref().and_then(|c| c.get(i)) {
                        Some(c) if is_query(c) => c.clone(),
                        _ => self.compat.rewrite(*q),
                    };
                    array_subqueries(&mut q);
                    regtype_text(&mut q);
                    regtype_arrays(&mut q);
                    catalog_scalar_subqueries(&mut q);
                    regproc_joins(&mut q);
                    acl_texts(&mut q);
                    expand_arrays(&mut q);
                    session_settings(&mut q);
                    distinct_names(&mut q);
                    Statement::Sql(Box::new(q))
                }
                other => other,
            })
            .collect())
    }
}

/// Whether `e` calls a function (an aggregate, perhaps).
fn calls_a_function(e: &ast::Expr) -> bool {
    ast::visit_expressions(e, |e| {
        if matches!(e, ast::Expr::Function(_) | ast::Expr::Subquery(_)) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// A scalar subquery over PostgreSQL's catalog that returns one column,
/// `(SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid)` (Npgsql's
/// type loading) or `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid =
/// t.typrelid)` (pgjdbc's type info), as `(SELECT min(…) …)`: DataFusion plans a
/// correlated scalar subquery only when it is aggregated. The catalog
/// relations clients ask so have one row per key, so the answer is the
/// same; a subquery over the user's tables is left as written.
fn catalog_scalar_subqueries(stmt: &mut ast::Statement) {
    fn catalog_relation(f: &ast::TableFactor) -> bool {
        match f {
            ast::TableFactor::Table { name, .. } => {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                    .collect();
                match parts.as_slice() {
                    [t] => t.starts_with("pg_"),
                    [s, t] => s == "pg_catalog" && t.starts_with("pg_"),
                    _ => false,
                }
            }
            _ => false,
        }
    }
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Subquery(q) = e
            && let ast::SetExpr::Select(select) = q.body.as_mut()
            && select.group_by == ast::GroupByExpr::Expressions(vec![], vec![])
            && !select.from.is_empty()
            && select.from.iter().all(|t| {
                catalog_relation(&t.relation)
                    && t.joins.iter().all(|j| catalog_relation(&j.relation))
            })
            && let [ast::SelectItem::UnnamedExpr(item)] = select.projection.as_slice()
            && !calls_a_function(item)
        {
            let text = format!("min({item})");
            if let Some(agg) = parse_expr(&text) {
                select.projection = vec![ast::SelectItem::UnnamedExpr(agg)];
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// The column an expression names (`c`, `t.c`), if it names one.
fn column_of(e: &ast::Expr) -> Option<&ast::Ident> {
    match e {
        ast::Expr::Identifier(i) => Some(i),
        ast::Expr::CompoundIdentifier(parts) => parts.last(),
        _ => None,
    }
}

/// Whether `f` calls the function `name` (with or without a schema).
fn calls(f: &ast::Function, name: &str) -> bool {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
}

/// `proc.oid = typ.typreceive` (Npgsql, pgjdbc): in PostgreSQL the
/// `typinput`/`typoutput`/`typreceive`/`typsend` columns are `regproc`, OIDs
/// shown as names; in the catalog Tessera serves they hold the name, so the
/// join is made on `proc.proname`.
fn regproc_joins(stmt: &mut ast::Statement) {
    let regproc = |e: &ast::Expr| {
        column_of(e).map(|i| i.value.as_str()).is_some_and(|n| {
            ["typinput", "typoutput", "typreceive", "typsend"]
                .iter()
                .any(|c| n.eq_ignore_ascii_case(c))
        })
    };
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } = e
        {
            let to_name = |side: &mut ast::Expr| {
                if let ast::Expr::CompoundIdentifier(parts) = side
                    && parts.len() == 2
                    && parts[1].value.eq_ignore_ascii_case("oid")
                {
                    parts[1] = ast::Ident::new("proname");
                }
            };
            // `typinput = 'pg_catalog.array_in'::regproc` (pgjdbc's type
            // cache), which the compatibility rules turned into a subquery
            // for the function's OID: the function's name.
            let to_literal = |side: &mut ast::Expr| {
                if let Some(name) = regproc_literal(side) {
                    *side = ast::Expr::value(ast::Value::SingleQuotedString(name));
                }
            };
            if regproc(right) {
                to_name(left);
                to_literal(left);
            } else if regproc(left) {
                to_name(right);
                to_literal(right);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `array_to_string(p.proacl, E'\n')` (psql's `\df+`, `\dp`): the access
/// lists of the catalog Tessera serves (`relacl`, `proacl`, …) are text
/// (NULL: privileges are shown by Tessera's roles, see docs/server.md), so
/// the list is the column itself.
fn acl_texts(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Function(f) = &*e
            && calls(f, "array_to_string")
            && let ast::FunctionArguments::List(list) = &f.args
            && let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(first))) =
                list.args.first()
            && column_of(first).is_some_and(|c| c.value.to_ascii_lowercase().ends_with("acl"))
        {
            *e = first.clone();
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// An expression of a rewrite, from its text.
fn parse_expr(text: &str) -> Option<ast::Expr> {
    tessera_sql::datafusion::sql::sqlparser::parser::Parser::new(
        &tessera_sql::datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(text)
    .and_then(|mut p| p.parse_expr())
    .ok()
}

/// The function a `(SELECT oid FROM pg_proc WHERE proname = 'name')`
/// looks up (the compatibility rules' form of `'name'::regproc`), without
/// its schema.
fn regproc_literal(e: &ast::Expr) -> Option<String> {
    let ast::Expr::Subquery(q) = e else {
        return None;
    };
    let ast::SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let ast::Expr::BinaryOp {
        left,
        op: ast::BinaryOperator::Eq,
        right,
    } = select.selection.as_ref()?
    else {
        return None;
    };
    let column = column_of(left)?;
    let ast::Expr::Value(v) = right.as_ref() else {
        return None;
    };
    let ast::Value::SingleQuotedString(name) = &v.value else {
        return None;
    };
    column
        .value
        .eq_ignore_ascii_case("proname")
        .then(|| name.strip_prefix("pg_catalog.").unwrap_or(name).to_string())
}

/// `SELECT NULL, NULL, NULL, …` (pgjdbc's `getProcedures`): PostgreSQL
/// names every unnamed column `?column?`, DataFusion wants names that
/// differ: the second and later of a repeated unnamed expression are named
/// `?column?2`, `?column?3`, ….
fn distinct_names(stmt: &mut ast::Statement) {
    struct Names;
    impl ast::VisitorMut for Names {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
            if let ast::SetExpr::Select(select) = q.body.as_mut() {
                let mut seen = std::collections::HashSet::new();
                let mut n = 1;
                for item in &mut select.projection {
                    if let ast::SelectItem::UnnamedExpr(e) = item
                        && !seen.insert(e.to_string())
                    {
                        n += 1;
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: ast::Ident::with_quote('"', format!("?column?{n}")),
                        };
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(stmt, &mut Names);
}

/// `pg_settings` (pgjdbc's `max_index_keys`, DBeaver's, Metabase's probes)
/// as `pg_session_settings()`: the settings of the session asking.
fn session_settings(stmt: &mut ast::Statement) {
    struct Settings;
    impl ast::VisitorMut for Settings {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            t: &mut ast::TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if let ast::TableFactor::Table { name, args, .. } = t
                && args.is_none()
            {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                    .collect();
                if matches!(parts.as_slice(), [t] if t == "pg_settings")
                    || matches!(parts.as_slice(), [s, t] if s == "pg_catalog" && t == "pg_settings")
                {
                    *name = ast::ObjectName::from(vec![ast::Ident::new("pg_session_settings")]);
                    *args = Some(ast::TableFunctionArgs {
                        args: Vec::new(),
                        settings: None,
                    });
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(stmt, &mut Settings);
}

/// If `e` is a catalog column of integers kept as text here, the index of
/// its first element: 0 for `pg_index`'s `int2vector`s and `oidvector`s,
/// 1 for `pg_constraint`'s arrays (`conkey[n]`, pgjdbc's foreign keys).
fn vector_column(e: &ast::Expr) -> Option<i64> {
    let name = column_of(e)?.value.to_ascii_lowercase();
    if [
        "indkey",
        "indoption",
        "indclass",
        "indcollation",
        "i_indoption",
    ]
    .contains(&name.as_str())
    {
        Some(0)
    } else if [
        "conkey",
        "confkey",
        "conpfeqop",
        "conppeqop",
        "conffeqop",
        "conexclop",
    ]
    .contains(&name.as_str())
    {
        Some(1)
    } else {
        None
    }
}

/// `information_schema._pg_expandarray(i.indkey)` and `(keys).x` (pgjdbc's
/// `getPrimaryKeys`, `getIndexInfo`): the set-returning function as
/// `unnest(pg_expand_array(…))` (one `(x, n)` per element, as PostgreSQL's)
/// and a field of a composite value as `get_field(value, 'x')`, which
/// DataFusion plans.
fn expand_arrays(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let text = match &*e {
            ast::Expr::Function(f) if calls(f, "_pg_expandarray") => {
                let ast::FunctionArguments::List(list) = &f.args else {
                    return std::ops::ControlFlow::<()>::Continue(());
                };
                let [arg] = list.args.as_slice() else {
                    return std::ops::ControlFlow::<()>::Continue(());
                };
                format!("unnest(pg_expand_array({arg}))")
            }
            // `i.indoption[n]`: PostgreSQL's int2vector, zero-based, kept as
            // text here.
            ast::Expr::CompoundFieldAccess { root, access_chain }
                if let [
                    path @ ..,
                    ast::AccessExpr::Subscript(ast::Subscript::Index { index }),
                ] = access_chain.as_slice()
                    && path.iter().all(|a| matches!(a, ast::AccessExpr::Dot(_)))
                    && let Some(first) = match path.last() {
                        Some(ast::AccessExpr::Dot(last)) => vector_column(last),
                        _ => vector_column(root),
                    } =>
            {
                let column: String = std::iter::once(root.to_string())
                    .chain(path.iter().map(|a| a.to_string()))
                    .collect();
                format!(
                    "array_element(pg_int_vector({column}), ({index}) + {})",
                    1 - first
                )
            }
            ast::Expr::CompoundFieldAccess { root, access_chain }
                if matches!(root.as_ref(), ast::Expr::Nested(_)) =>
            {
                let mut text = root.to_string();
                for access in access_chain {
                    match access {
                        ast::AccessExpr::Dot(ast::Expr::Identifier(field)) => {
                            text = format!("get_field({text}, '{}')", field.value);
                        }
                        _ => return std::ops::ControlFlow::<()>::Continue(()),
                    }
                }
                text
            }
            _ => return std::ops::ControlFlow::<()>::Continue(()),
        };
        if let Some(call) = parse_expr(&text) {
            *e = call;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Whether a type name is `name` or `pg_catalog.name`.
fn is_type(t: &ast::DataType, name: &str) -> bool {
    match t {
        ast::DataType::Custom(n, _) => {
            n.0.last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
        }
        ast::DataType::Text => name == "text",
        _ => false,
    }
}

/// `x::regtype::text` (pgcli, pgAdmin) as `pg_type_name(x)`: the type's
/// name, as PostgreSQL prints it (`format_type`, or the name of a
/// pseudo-type such as `anyelement`), where the plain cast would give the
/// number.
fn regtype_text(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = &*e
            && is_type(data_type, "text")
            && let ast::Expr::Cast {
                expr: oid,
                data_type: reg,
                ..
            } = inner.as_ref()
            && is_type(reg, "regtype")
        {
            let text = format!("pg_type_name({oid})");
            if let Some(call) = parse_expr(&text) {
                *e = call;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `proargtypes::regtype[]` (pgcli's function list): an OID vector as the
/// names of its types, `pg_type_names(x)` (the catalog Tessera serves
/// keeps OID vectors as text, which no cast turns into an array).
fn regtype_arrays(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Cast {
            expr: inner,
            data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, _)),
            ..
        } = &*e
            && is_type(element, "regtype")
        {
            let text = format!("pg_type_names({inner})");
            if let Some(call) = parse_expr(&text) {
                *e = call;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Whether a query reads a relation of `pg_catalog` or
/// `information_schema` (named so, or `pg_…` unqualified), or calls a
/// function of `pg_catalog` by that name.
fn reads_catalog(stmt: &ast::Statement) -> bool {
    let mut found = false;
    let _ = ast::visit_relations(stmt, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        found |= match parts.as_slice() {
            [t] => t.starts_with("pg_"),
            [s, _] | [_, s, _] => s == "pg_catalog" || s == "information_schema",
            _ => false,
        };
        std::ops::ControlFlow::<()>::Continue(())
    });
    // Or calls a function through `pg_catalog.` (`SELECT pg_catalog.version()`).
    let _ = ast::visit_expressions(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            found |= f.name.0.len() > 1
                && f.name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// `ARRAY(SELECT x FROM … [ORDER BY …])`, which psql's `\du` and others
/// send, as the scalar subquery `(SELECT array_agg(x [ORDER BY …]) FROM …)`
/// DataFusion plans (correlated or not). One difference: no rows give
/// NULL, not an empty array.
fn array_subqueries(stmt: &mut ast::Statement) {
    use tessera_sql::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        let ast::Expr::Function(f) = &*e else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let ast::FunctionArguments::Subquery(q) = &f.args else {
            return std::ops::ControlFlow::Continue(());
        };
        if !f.name.to_string().eq_ignore_ascii_case("array") {
            return std::ops::ControlFlow::Continue(());
        }
        let mut q = (**q).clone();
        let order = q.order_by.take();
        let ast::SetExpr::Select(select) = q.body.as_mut() else {
            return std::ops::ControlFlow::Continue(());
        };
        let item = match select.projection.as_slice() {
            [ast::SelectItem::UnnamedExpr(x)]
            | [ast::SelectItem::ExprWithAlias { expr: x, .. }] => x.clone(),
            _ => return std::ops::ControlFlow::Continue(()),
        };
        let order = match order.map(|o| o.kind) {
            Some(ast::OrderByKind::Expressions(exprs)) if !exprs.is_empty() => format!(
                " ORDER BY {}",
                exprs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        let text = format!("array_agg({item}{order})");
        let Ok(agg) =
            tessera_sql::datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
        else {
            return std::ops::ControlFlow::Continue(());
        };
        select.projection = vec![ast::SelectItem::UnnamedExpr(agg)];
        *e = ast::Expr::Subquery(Box::new(q));
        std::ops::ControlFlow::Continue(())
    });
}

fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Arc<Session>>()
        .map(|s| Arc::clone(s.as_ref()))
        .ok_or_else(|| super::fatal("08P01", "the connection has no session"))
}

/// The columns of a one-column text result.
fn text_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

/// Sets how the session reads PII columns from its role as it is now (a
/// GRANT pii_reader takes effect at the role's next statement), before
/// anything of the statement is planned.
fn refresh_pii(shared: &Shared, session: &Session) -> Result<()> {
    session.set_pii_access(role_now(shared, session)?.pii_access());
    Ok(())
}

/// The session's role as it is now (grants may have changed since the
/// connection logged in).
fn role_now(shared: &Shared, session: &Session) -> Result<roles::Role> {
    shared.roles.get(&session.role.name).ok_or_else(|| {
        WireError::Permission(format!("role \"{}\" no longer exists", session.role.name))
    })
}

/// What a statement returns, before running it (for `Describe`).
async fn describe(
    session: &Session,
    shared: &Shared,
    stmt: &Statement,
) -> Result<(Option<SchemaRef>, Vec<Option<DataType>>)> {
    refresh_pii(shared, session)?;
    let resolved;
    let stmt = match stmt {
        Statement::Sql(s) => {
            let mut s = s.clone();
            session.resolve_names(&mut s);
            resolved = Statement::Sql(s);
            &resolved
        }
        other => other,
    };
    match stmt {
        Statement::Sql(s) => match s.as_ref() {
            q if is_query(q) => {
                let plan = shared.db.engine().plan_in(&session.ctx, q.clone()).await?;
                let params = param_types(&plan)?;
                let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
                Ok((Some(schema), params))
            }
            ast::Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok((Some(text_schema(&name.to_ascii_lowercase())), Vec::new()))
            }
            ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_) => {
                // Planned only to learn the parameters' types.
                let params = match shared
                    .db
                    .engine()
                    .plan_in(&session.ctx, s.as_ref().clone())
                    .await
                {
                    Ok(plan) => param_types(&plan)?,
                    Err(_) => vec![None; count_placeholders(s)],
                };
                Ok((None, params))
            }
            other => Ok((None, vec![None; count_placeholders(other)])),
        },
        _ => Ok((None, Vec::new())),
    }
}

fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| WireError::from(tessera_engine::SqlError::from(e)))?;
    let mut out: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| {
            k.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|i| (i, v))
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    let n = out.last().map_or(0, |(i, _)| *i);
    let mut params = vec![None; n];
    for (i, t) in out {
        if let Some(slot) = params.get_mut(i.wrapping_sub(1)) {
            *slot = t;
        }
    }
    // DataFusion infers a parameter's type from what it is compared with;
    // `$1::int` (tokio-postgres, pgjdbc) says it outright, as PostgreSQL
    // reads it.
    if params.iter().any(Option::is_none) {
        use tessera_sql::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        use tessera_sql::datafusion::logical_expr::{Cast, Expr, TryCast};
        let _ = plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    let (inner, to) = match e {
                        Expr::Cast(Cast { expr, field })
                        | Expr::TryCast(TryCast { expr, field }) => {
                            (expr.as_ref(), field.data_type())
                        }
                        _ => return Ok(TreeNodeRecursion::Continue),
                    };
                    if let Expr::Placeholder(p) = inner
                        && let Ok(i) = p.id.trim_start_matches('$').parse::<usize>()
                        && let Some(slot @ None) = params.get_mut(i.wrapping_sub(1))
                    {
                        *slot = Some(to.clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
    }
    Ok(params)
}

fn count_placeholders(stmt: &ast::Statement) -> usize {
    let mut n = 0usize;
    let _ = ast::visit_expressions(stmt, |e| {
        if let ast::Expr::Value(v) = e
            && let ast::Value::Placeholder(p) = &v.value
            && let Ok(i) = p.trim_start_matches('$').parse::<usize>()
        {
            n = n.max(i);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    n
}

/// Replaces `$n` in a statement by the literal values bound to them (for
/// statements DataFusion does not plan with parameters).
fn bind_literals(stmt: &mut ast::Statement, params: &ParamValues) -> Result<()> {
    let ParamValues::List(values) = params else {
        return Ok(());
    };
    let mut failure = None;
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Value(v) = e
            && let ast::Value::Placeholder(p) = &v.value
        {
            let i = p.trim_start_matches('$').parse::<usize>().unwrap_or(0);
            match values.get(i.wrapping_sub(1)) {
                Some(value) => *e = literal(&value.value),
                None => failure = Some(p.clone()),
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match failure {
        Some(p) => Err(WireError::InvalidParameter(format!(
            "no value bound to parameter {p}"
        ))),
        None => Ok(()),
    }
}

/// A SQL literal of a bound value.
fn literal(v: &ScalarValue) -> ast::Expr {
    use ast::{Expr, Value};
    if v.is_null() {
        return Expr::value(Value::Null);
    }
    let text = v
        .to_array()
        .ok()
        .and_then(|a| {
            tessera_sql::datafusion::arrow::util::display::array_value_to_string(&a, 0).ok()
        })
        .unwrap_or_else(|| v.to_string());
    match v.data_type() {
        DataType::Boolean => Expr::value(Value::Boolean(matches!(
            v,
            ScalarValue::Boolean(Some(true))
        ))),
        t if t.is_numeric() => Expr::value(Value::Number(text, false)),
        DataType::Date32 | DataType::Date64 => Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(Expr::value(Value::SingleQuotedString(text))),
            data_type: ast::DataType::Date,
            format: None,
            array: false,
        },
        DataType::Timestamp(_, tz) => Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(Expr::value(Value::SingleQuotedString(text))),
            data_type: ast::DataType::Timestamp(
                None,
                if tz.is_some() {
                    ast::TimezoneInfo::WithTimeZone
                } else {
                    ast::TimezoneInfo::None
                },
            ),
            format: None,
            array: false,
        },
        _ => Expr::value(Value::SingleQuotedString(text)),
    }
}

/// The handler every connection shares.
#[derive(Debug)]
pub struct Handler {
    shared: Arc<Shared>,
    parser: Arc<Parser>,
}

impl Handler {
    /// A handler over the server's shared state.
    pub fn new(shared: Arc<Shared>) -> Handler {
        Handler {
            shared: Arc::clone(&shared),
            parser: Arc::new(Parser {
                shared: Arc::clone(&shared),
                compat: datafusion_pg_catalog::sql::PostgresCompatibilityParser::new(),
            }),
        }
    }

    /// Runs `fut` on the database's runtime (queries and writes never
    /// occupy the threads that serve sockets and cancel requests); the work
    /// is aborted if the caller stops waiting (cancel, timeout).
    async fn work<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let mut task = AbortOnDrop(self.shared.db.runtime().spawn(fut));
        match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Err(WireError::Cancelled),
            Err(e) => Err(WireError::Internal(format!(
                "a statement's task failed: {e}"
            ))),
        }
    }

    /// Starts a plan on the database's runtime; its batches come through a
    /// small channel, so the query runs only as fast as the client reads.
    async fn start(
        &self,
        ctx: tessera_sql::datafusion::prelude::SessionContext,
        plan: LogicalPlan,
    ) -> Result<QueryStream> {
        let db = self.shared.db.clone();
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = self.shared.db.runtime().spawn(async move {
            use futures::StreamExt;
            let mut out = match db.engine().stream_plan(&ctx, plan).await {
                Ok(out) => out,
                Err(e) => {
                    let _ = schema_tx.send(Err(WireError::from(e)));
                    return;
                }
            };
            if schema_tx
                .send(Ok(std::sync::Arc::clone(&out.schema)))
                .is_err()
            {
                return;
            }
            while let Some(batch) = out.stream.next().await {
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        });
        let guard = Arc::new(AbortOnDrop(task));
        let schema = schema_rx
            .await
            .map_err(|_| WireError::Internal("the query's task ended early".into()))??;
        let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|b| (b, (rx, guard)))
        });
        Ok(QueryStream {
            schema: Arc::clone(&schema),
            stream: Box::pin(
                tessera_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema, stream,
                ),
            ),
            tag: "SELECT".into(),
        })
    }

    fn deadline(&self, session: &Session) -> Option<(Instant, std::time::Duration)> {
        session.statement_timeout().map(|d| (Instant::now() + d, d))
    }

    /// Runs `fut` unless the session is cancelled or the deadline passes.
    async fn guarded<T>(
        &self,
        session: &Session,
        deadline: Option<(Instant, std::time::Duration)>,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        session.interruptible(deadline, fut).await
    }

    /// Tables a plan reads, as `schema.table` (catalog tables left out),
    /// and whether it calls a table function.
    fn tables_read(default_schema: &str, plan: &LogicalPlan) -> (Vec<String>, bool) {
        let mut tables = Vec::new();
        let mut functions = false;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let t = &scan.table_name;
                let schema = t.schema().unwrap_or(default_schema).to_string();
                let table = t.table().to_string();
                if table.ends_with(')') {
                    functions = true;
                } else if schema != "pg_catalog" && schema != "information_schema" {
                    tables.push(format!("{schema}.{table}"));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        (tables, functions)
    }

    /// The session's role as it is now (grants may have changed since the
    /// connection logged in).
    fn role(&self, session: &Session) -> Result<roles::Role> {
        role_now(&self.shared, session)
    }

    /// Checks the role's SELECT on what a plan made in the session reads.
    fn check_read(&self, session: &Session, plan: &LogicalPlan) -> Result<()> {
        self.check_read_in(session, &session.default_schema(), plan)
    }

    /// Checks the role's SELECT on what a plan reads, unqualified names
    /// being in `default_schema`.
    fn check_read_in(
        &self,
        session: &Session,
        default_schema: &str,
        plan: &LogicalPlan,
    ) -> Result<()> {
        refresh_pii(&self.shared, session)?;
        let role = self.role(session)?;
        if role.superuser {
            return Ok(());
        }
        let (tables, functions) = Self::tables_read(default_schema, plan);
        for t in tables {
            if !role.may(Privilege::Select, &t) {
                return Err(WireError::Permission(format!(
                    "permission denied for table {t}"
                )));
            }
        }
        if functions && !role.may(Privilege::Select, "public.*") {
            return Err(WireError::Permission(
                "permission denied: Tessera's table functions need SELECT on every table of schema public"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `schema.table` of a name in a statement the database runs (writes,
    /// COPY FROM): the database resolves unqualified names in its default
    /// schema, not the session's `search_path`, so privileges are checked on
    /// the very table written.
    fn qualified(name: &ast::ObjectName) -> String {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p.as_ident() {
                Some(i) if i.quote_style.is_some() => i.value.clone(),
                Some(i) => i.value.to_lowercase(),
                None => p.to_string(),
            })
            .collect();
        match parts.as_slice() {
            [t] => format!("{}.{t}", tessera_sql::DEFAULT_SCHEMA),
            [s, t] | [_, s, t] => format!("{s}.{t}"),
            _ => name.to_string(),
        }
    }

    fn require(
        &self,
        session: &Session,
        privilege: Privilege,
        table: &ast::ObjectName,
    ) -> Result<()> {
        let t = Self::qualified(table);
        if self.role(session)?.may(privilege, &t) {
            Ok(())
        } else {
            Err(WireError::Permission(format!(
                "permission denied for table {t}"
            )))
        }
    }

    fn require_superuser(&self, session: &Session, what: &str) -> Result<()> {
        if self.role(session)?.superuser {
            Ok(())
        } else {
            Err(WireError::Permission(format!(
                "permission denied: only a superuser may run {what}"
            )))
        }
    }

    /// Runs one statement of a session.
    async fn execute(
        &self,
        session: &Arc<Session>,
        statement: Statement,
        params: Option<&ParamValues>,
        format: &Format,
    ) -> Result<Response> {
        let deadline = self.deadline(session);
        refresh_pii(&self.shared, session)?;
        let s = match statement {
            Statement::Sql(mut s) => {
                session.resolve_names(&mut s);
                *s
            }
            Statement::ExportProfile(e) => {
                self.require_superuser(session, "EXPORT PROFILE")?;
                return self.export_profile(session, e, format, deadline).await;
            }
            Statement::GrantPii(g) => {
                self.require_superuser(session, if g.grant { "GRANT" } else { "REVOKE" })?;
                return Ok(Response::Execution(Tag::new(roles::statements::grant_pii(
                    &self.shared.roles,
                    &g.roles,
                    g.grant,
                )?)));
            }
            other => {
                let what = match &other {
                    Statement::Unify(_) => "UNIFY",
                    Statement::AlterUnify(_) => "ALTER UNIFY",
                    Statement::Archive(_) => "ARCHIVE",
                    Statement::SetPii(_) => "ALTER TABLE … SET PII",
                    Statement::Segment(_) => "SEGMENT statements",
                    Statement::Compact(_) => "COMPACT",
                    Statement::Erase(_) => "ERASE PROFILE",
                    Statement::VerifyErasure(_) => "VERIFY ERASURE",
                    Statement::LiftSuppression(_) => "LIFT SUPPRESSION",
                    _ => "VERIFY",
                };
                self.require_superuser(session, what)?;
                return self.run_in_database(session, other, format, deadline).await;
            }
        };
        match s {
            q if is_query(&q) => {
                let engine = self.shared.db.engine();
                let plan = self
                    .guarded(session, deadline, async {
                        let plan = engine.plan_in(&session.ctx, q).await?;
                        Ok(match params {
                            Some(p) => plan
                                .with_param_values(p.clone())
                                .map_err(|e| WireError::from(tessera_engine::SqlError::from(e)))?,
                            None => plan,
                        })
                    })
                    .await?;
                self.check_read(session, &plan)?;
                let out = self
                    .guarded(session, deadline, self.start(session.ctx.clone(), plan))
                    .await?;
                Ok(Response::Query(
                    encode::query_response(out, format, Arc::clone(session), deadline, "SELECT")
                        .map_err(unencodable)?,
                ))
            }
            ast::Statement::Set(set) => self.set(session, set),
            ast::Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                let (schema, rows): (SchemaRef, Vec<(String, String)>) =
                    if name.eq_ignore_ascii_case("all") {
                        (
                            Arc::new(Schema::new(vec![
                                Field::new("name", DataType::Utf8, false),
                                Field::new("setting", DataType::Utf8, false),
                            ])),
                            session.all(),
                        )
                    } else {
                        let v = session.get(&name)?;
                        (text_schema(&name.to_ascii_lowercase()), vec![(name, v)])
                    };
                let batch = if schema.fields().len() == 2 {
                    RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![
                            Arc::new(StringArray::from_iter_values(
                                rows.iter().map(|r| r.0.as_str()),
                            )),
                            Arc::new(StringArray::from_iter_values(
                                rows.iter().map(|r| r.1.as_str()),
                            )),
                        ],
                    )
                } else {
                    RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![Arc::new(StringArray::from_iter_values(
                            rows.iter().map(|r| r.1.as_str()),
                        ))],
                    )
                }
                .map_err(|e| WireError::Internal(e.to_string()))?;
                self.rows(session, schema, vec![batch], format, "SHOW")
            }
            ast::Statement::Reset(r) => {
                match r.reset {
                    ast::Reset::ALL => session.reset(None)?,
                    ast::Reset::ConfigurationParameter(n) => session.reset(Some(&n.to_string()))?,
                }
                Ok(Response::Execution(Tag::new("RESET")))
            }
            ast::Statement::StartTransaction { .. } => {
                *session.writes_in_block.lock() = 0;
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            ast::Statement::Commit { .. } => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            // Each statement commits on its own (docs/server.md): savepoints
            // are accepted so that drivers which set them work.
            ast::Statement::Savepoint { .. } => Ok(Response::Execution(Tag::new("SAVEPOINT"))),
            ast::Statement::ReleaseSavepoint { .. } => Ok(Response::Execution(Tag::new("RELEASE"))),
            ast::Statement::Rollback {
                savepoint: Some(_), ..
            } => Ok(Response::Execution(Tag::new("ROLLBACK"))),
            ast::Statement::Rollback { .. } => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
            ast::Statement::Discard { .. } => {
                session.reset(None)?;
                session.cursors.lock().await.clear();
                Ok(Response::Execution(Tag::new("DISCARD ALL")))
            }
            ast::Statement::Deallocate { name, .. } => Ok(Response::Execution(Tag::new(
                if name.value.eq_ignore_ascii_case("all") {
                    "DEALLOCATE ALL"
                } else {
                    "DEALLOCATE"
                },
            ))),
            ast::Statement::Declare { stmts } => {
                for d in stmts {
                    let Some(query) = d.for_query else {
                        return Err(WireError::Unsupported(
                            "DECLARE without FOR <query>: only cursors are supported".into(),
                        ));
                    };
                    let name = d.names.first().map(|n| n.value.clone()).unwrap_or_default();
                    let engine = self.shared.db.engine();
                    let plan = engine
                        .plan_in(&session.ctx, ast::Statement::Query(query))
                        .await?;
                    self.check_read(session, &plan)?;
                    let stream = self.start(session.ctx.clone(), plan).await?;
                    session.cursors.lock().await.insert(
                        name,
                        Cursor {
                            stream,
                            pending: None,
                        },
                    );
                }
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            ast::Statement::Fetch {
                name, direction, ..
            } => {
                self.fetch(session, &name.value, direction, format, deadline)
                    .await
            }
            ast::Statement::Close { cursor } => {
                let mut cursors = session.cursors.lock().await;
                match cursor {
                    ast::CloseCursor::All => cursors.clear(),
                    ast::CloseCursor::Specific { name } => {
                        if cursors.remove(&name.value).is_none() {
                            return Err(WireError::UndefinedCursor(format!(
                                "cursor \"{}\" does not exist",
                                name.value
                            )));
                        }
                    }
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            copy @ ast::Statement::Copy {
                to: false,
                target: ast::CopyTarget::Stdin,
                ..
            } => {
                let ast::Statement::Copy {
                    source:
                        ast::CopySource::Table {
                            table_name,
                            columns,
                        },
                    ..
                } = &copy
                else {
                    return Err(WireError::Unsupported("COPY FROM loads a table".into()));
                };
                self.require(session, Privilege::Insert, table_name)?;
                let ncols = if columns.is_empty() {
                    let name = Self::qualified(table_name);
                    let (schema, table) = name.split_once('.').unwrap_or(("public", &name));
                    session
                        .ctx
                        .table_provider(tessera_sql::datafusion::common::TableReference::partial(
                            schema, table,
                        ))
                        .await
                        .map_err(|e| WireError::from(tessera_engine::SqlError::from(e)))?
                        .schema()
                        .fields()
                        .len()
                } else {
                    columns.len()
                };
                let store = self.shared.db.engine().store();
                let spool = if store.is_encrypted() {
                    // The input is gathered before it is applied; an
                    // encrypted database keeps it in memory (tmpfs), never
                    // in a plaintext file on disk.
                    tempfile::Builder::new()
                        .prefix("tessera-copy-in-")
                        .tempfile_in(MEMORY_SPOOL)
                        .map_err(|e| {
                            WireError::Io(std::io::Error::new(
                                e.kind(),
                                format!("COPY FROM STDIN into an encrypted database gathers its input in {MEMORY_SPOOL} (memory), which cannot be used: {e}"),
                            ))
                        })?
                } else {
                    tempfile::Builder::new()
                        .prefix("copy-in-")
                        .tempfile_in(store.dir())
                        .or_else(|_| tempfile::NamedTempFile::new())?
                };
                *session.copy_in.lock() = Some(CopyIn {
                    statement: copy,
                    spool,
                    bytes: 0,
                });
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    ncols,
                    futures::stream::empty(),
                )))
            }
            ast::Statement::Copy {
                source,
                to: true,
                target: ast::CopyTarget::Stdout,
                options,
                legacy_options,
                ..
            } => {
                self.copy_out(session, source, &options, &legacy_options, deadline)
                    .await
            }
            ast::Statement::Copy { ref target, .. }
                if matches!(target, ast::CopyTarget::File { .. }) =>
            {
                self.require_superuser(session, "COPY to or from a server file")?;
                self.check_copy_path(target)?;
                self.run_in_database(session, Statement::Sql(Box::new(s)), format, deadline)
                    .await
            }
            ast::Statement::CreateRole(c) => {
                self.require_superuser(session, "CREATE ROLE")?;
                Ok(Response::Execution(Tag::new(roles::statements::create(
                    &self.shared.roles,
                    &c,
                )?)))
            }
            ast::Statement::AlterRole { name, operation } => {
                self.require_superuser(session, "ALTER ROLE")?;
                Ok(Response::Execution(Tag::new(roles::statements::alter(
                    &self.shared.roles,
                    &name,
                    &operation,
                )?)))
            }
            ast::Statement::Drop {
                object_type: ast::ObjectType::Role,
                names,
                if_exists,
                ..
            } => {
                self.require_superuser(session, "DROP ROLE")?;
                Ok(Response::Execution(Tag::new(roles::statements::drop(
                    &self.shared.roles,
                    &names,
                    if_exists,
                    &session.role.name,
                )?)))
            }
            ast::Statement::Grant(g) => self.grant(
                session,
                &g.privileges,
                g.objects.as_ref(),
                &g.grantees,
                false,
            ),
            ast::Statement::Revoke(r) => self.grant(
                session,
                &r.privileges,
                r.objects.as_ref(),
                &r.grantees,
                true,
            ),
            mut other => {
                match &other {
                    ast::Statement::Insert(i) => match &i.table {
                        ast::TableObject::TableName(n) => {
                            self.require(session, Privilege::Insert, n)?
                        }
                        _ => self.require_superuser(session, "INSERT INTO a table function")?,
                    },
                    ast::Statement::Update(u) => match &u.table.relation {
                        ast::TableFactor::Table { name, .. } => {
                            self.require(session, Privilege::Update, name)?
                        }
                        _ => self.require_superuser(session, "this UPDATE")?,
                    },
                    ast::Statement::Delete(d) => {
                        let tables = match &d.from {
                            ast::FromTable::WithFromKeyword(t)
                            | ast::FromTable::WithoutKeyword(t) => t,
                        };
                        for t in tables {
                            if let ast::TableFactor::Table { name, .. } = &t.relation {
                                self.require(session, Privilege::Delete, name)?;
                            }
                        }
                    }
                    _ => self.require_superuser(session, &tag_word(&other))?,
                }
                if let Some(p) = params {
                    bind_literals(&mut other, p)?;
                }
                // What an INSERT … SELECT, an UPDATE … FROM or a WHERE
                // subquery reads needs SELECT too (as in PostgreSQL).
                if matches!(
                    other,
                    ast::Statement::Insert(_)
                        | ast::Statement::Update(_)
                        | ast::Statement::Delete(_)
                ) && !self.role(session)?.superuser
                {
                    // Planned where it runs: in the database's own session.
                    let engine = self.shared.db.engine();
                    if let Ok(plan) = engine.plan_in(engine.context(), other.clone()).await {
                        self.check_read_in(session, tessera_sql::DEFAULT_SCHEMA, &plan)?;
                    }
                }
                *session.writes_in_block.lock() += 1;
                self.run_in_database(session, Statement::Sql(Box::new(other)), format, deadline)
                    .await
            }
        }
    }

    /// `GRANT` (or with `revoke`, `REVOKE`), by a superuser.
    fn grant(
        &self,
        session: &Session,
        privileges: &ast::Privileges,
        objects: Option<&ast::GrantObjects>,
        grantees: &[ast::Grantee],
        revoke: bool,
    ) -> Result<Response> {
        self.require_superuser(session, if revoke { "REVOKE" } else { "GRANT" })?;
        let schema = session.default_schema();
        Ok(Response::Execution(Tag::new(roles::statements::grant(
            &self.shared.roles,
            privileges,
            objects,
            grantees,
            &schema,
            revoke,
        )?)))
    }

    /// Runs a statement through the shared database on the session's
    /// behalf: interruptible, and reading PII as the session's role may.
    async fn run_as_role(
        &self,
        session: &Arc<Session>,
        statement: Statement,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<tessera_engine::QueryOutput> {
        let db = self.shared.db.clone();
        let access = self.role(session)?.pii_access();
        self.guarded(
            session,
            deadline,
            self.work(
                tessera_sql::pii::STATEMENT_ACCESS
                    .scope(access, async move { Ok(db.run_async(statement).await?) }),
            ),
        )
        .await
    }

    /// Runs a statement through the database (writes, DDL, Tessera's own).
    async fn run_in_database(
        &self,
        session: &Arc<Session>,
        statement: Statement,
        format: &Format,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<Response> {
        let out = self.run_as_role(session, statement, deadline).await?;
        if out.schema.fields().is_empty() {
            return Ok(Response::Execution(Tag::new(&out.tag)));
        }
        let word = out
            .tag
            .split_whitespace()
            .next()
            .unwrap_or("SELECT")
            .to_string();
        self.rows(session, Arc::clone(&out.schema), out.batches, format, &word)
    }

    fn rows(
        &self,
        session: &Arc<Session>,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        format: &Format,
        tag: &str,
    ) -> Result<Response> {
        let stream = QueryStream::from_batches(schema, batches);
        Ok(Response::Query(
            encode::query_response(stream, format, Arc::clone(session), None, tag)
                .map_err(unencodable)?,
        ))
    }

    fn set(&self, session: &Session, set: ast::Set) -> Result<Response> {
        let value_text = |values: &[ast::Expr]| -> String {
            values
                .iter()
                .map(|v| match v {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                            s.clone()
                        }
                        other => other.to_string(),
                    },
                    ast::Expr::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string();
                let value = value_text(&values);
                if value.eq_ignore_ascii_case("default") {
                    session.reset(Some(&name))?;
                } else {
                    session.set(&name, &value)?;
                }
            }
            ast::Set::SetTimeZone { value, .. } => {
                session.set("timezone", &value_text(&[value]))?;
            }
            ast::Set::SetNames { charset_name, .. } => {
                session.set("client_encoding", &charset_name.value)?;
            }
            ast::Set::SetNamesDefault {} => {}
            ast::Set::SetTransaction { .. } | ast::Set::SetSessionParam(_) => {}
            other => {
                return Err(WireError::Unsupported(format!("{other}")));
            }
        }
        Ok(Response::Execution(Tag::new("SET")))
    }

    fn check_copy_path(&self, target: &ast::CopyTarget) -> Result<()> {
        let ast::CopyTarget::File { filename } = target else {
            return Ok(());
        };
        let path = std::path::Path::new(filename);
        let parent = path.parent().unwrap_or(std::path::Path::new("."));
        let resolved = std::fs::canonicalize(parent)
            .map_err(|e| WireError::Permission(format!("COPY {filename}: {e}")))?;
        let allowed = self
            .shared
            .config
            .copy_dirs
            .iter()
            .any(|d| std::fs::canonicalize(d).is_ok_and(|d| resolved.starts_with(d)));
        if allowed && !filename.contains("..") {
            Ok(())
        } else {
            Err(WireError::Permission(format!(
                "COPY {filename}: server files may be read or written only inside the directories listed by --copy-dir"
            )))
        }
    }

    /// `EXPORT PROFILE … TO STDOUT` sends the JSON document as the data
    /// of a COPY, as psql prints it; `TO 'file'` writes a server file, in
    /// the directories `--copy-dir` allows.
    async fn export_profile(
        &self,
        session: &Arc<Session>,
        e: tessera_sql::parser::ExportProfile,
        format: &Format,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<Response> {
        if let Some(file) = &e.to {
            self.check_copy_path(&ast::CopyTarget::File {
                filename: file.clone(),
            })?;
            return self
                .run_in_database(session, Statement::ExportProfile(e), format, deadline)
                .await;
        }
        let out = self
            .run_as_role(session, Statement::ExportProfile(e), deadline)
            .await?;
        let mut text = out
            .batches
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<StringArray>())
            .filter(|a| !tessera_sql::datafusion::arrow::array::Array::is_empty(*a))
            .map(|a| a.value(0).to_string())
            .ok_or_else(|| WireError::Internal("EXPORT PROFILE returned no document".into()))?;
        text.push('\n');
        let data = futures::stream::iter([Ok(CopyData::new(bytes::Bytes::from(text)))]);
        Ok(Response::CopyOut(CopyResponse::new(0, 1, data)))
    }

    async fn copy_out(
        &self,
        session: &Arc<Session>,
        source: ast::CopySource,
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<Response> {
        let opts =
            tessera_sql::copy::CopyOptions::parse(options, legacy, std::path::Path::new("stdout"))?;
        let csv = match opts.format {
            tessera_sql::copy::Format::Csv => true,
            tessera_sql::copy::Format::Text => false,
            _ => {
                return Err(WireError::Unsupported(
                    "COPY TO STDOUT writes text or csv".into(),
                ));
            }
        };
        let query = tessera_sql::copy_source_query(source, false)?;
        let engine = self.shared.db.engine();
        let plan = engine.plan_in(&session.ctx, query).await?;
        self.check_read(session, &plan)?;
        let out = self
            .guarded(session, deadline, self.start(session.ctx.clone(), plan))
            .await?;
        let ncols = out.schema.fields().len();
        let text = CopyText {
            csv,
            delimiter: opts.delimiter,
            null: opts.null.clone(),
            header: opts.header,
        };
        Ok(Response::CopyOut(CopyResponse::new(
            0,
            ncols,
            encode::copy_out(out, text, Arc::clone(session), deadline),
        )))
    }

    async fn fetch(
        &self,
        session: &Arc<Session>,
        name: &str,
        direction: ast::FetchDirection,
        format: &Format,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<Response> {
        let count = |v: &ast::ValueWithSpan| -> Result<usize> {
            v.value
                .to_string()
                .parse::<usize>()
                .map_err(|_| WireError::InvalidParameter(format!("FETCH count {}", v.value)))
        };
        let want = match &direction {
            ast::FetchDirection::Next | ast::FetchDirection::Forward { limit: None } => 1,
            ast::FetchDirection::Count { limit }
            | ast::FetchDirection::Forward { limit: Some(limit) } => count(limit)?,
            ast::FetchDirection::All | ast::FetchDirection::ForwardAll => usize::MAX,
            other => {
                return Err(WireError::Unsupported(format!(
                    "FETCH {other}: Tessera's cursors move forward only"
                )));
            }
        };
        let mut cursors = session.cursors.lock().await;
        let cursor = cursors.get_mut(name).ok_or_else(|| {
            WireError::UndefinedCursor(format!("cursor \"{name}\" does not exist"))
        })?;
        let schema = Arc::clone(&cursor.stream.schema);
        let mut out = Vec::new();
        let mut have = 0usize;
        while have < want {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => {
                    match encode::next_batch(&mut cursor.stream.stream, session, deadline).await {
                        Some(b) => b?,
                        None => break,
                    }
                }
            };
            let take = (want - have).min(batch.num_rows());
            if take < batch.num_rows() {
                cursor.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
            have += take;
            out.push(batch.slice(0, take));
        }
        drop(cursors);
        self.rows(session, schema, out, format, "FETCH")
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tag_word(stmt: &ast::Statement) -> String {
    let text = stmt.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A result whose column types have no PostgreSQL counterpart.
fn unencodable(e: PgWireError) -> WireError {
    WireError::Unsupported(format!("cannot send this result over the wire: {e}"))
}

fn to_pg(e: WireError) -> PgWireError {
    e.into()
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        session.begin_statement();
        let statements = match self.parser.parse(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e)))]),
        };
        let n = statements.len();
        let mut responses = Vec::with_capacity(n);
        for (i, stmt) in statements.into_iter().enumerate() {
            warn_rollback(client, &session, &stmt).await?;
            let is_discard = matches!(&stmt, Statement::Sql(s) if matches!(**s, ast::Statement::Discard { .. } | ast::Statement::Deallocate { .. }));
            if is_discard {
                deallocate(client, &stmt);
            }
            match self
                .execute(&session, stmt, None, &Format::UnifiedText)
                .await
            {
                Ok(Response::Query(q)) if i + 1 < n => {
                    // A query followed by more statements is read to its end
                    // first, so that the statements after it do not change
                    // what it returns.
                    responses.push(Response::Query(drain(q).await?));
                }
                Ok(r @ Response::CopyIn(_)) => {
                    responses.push(r);
                    if i + 1 < n {
                        client
                            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                                ErrorInfo::new(
                                    "WARNING".into(),
                                    "01000".into(),
                                    "statements after COPY FROM STDIN in the same query were not run".into(),
                                ),
                            )))
                            .await?;
                    }
                    break;
                }
                Ok(r) => responses.push(r),
                Err(e) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A `ROLLBACK` after writes in a transaction block cannot undo them
/// (every statement commits on its own): the client is told, with a
/// WARNING, rather than left to believe they are gone. `COMMIT` and
/// `ROLLBACK` end the block's count.
async fn warn_rollback<C>(client: &mut C, session: &Session, stmt: &Statement) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let Statement::Sql(s) = stmt else {
        return Ok(());
    };
    let ends = match s.as_ref() {
        ast::Statement::Rollback {
            savepoint: None, ..
        } => true,
        ast::Statement::Commit { .. } => false,
        _ => return Ok(()),
    };
    let writes = std::mem::take(&mut *session.writes_in_block.lock());
    let in_block = !matches!(
        client.transaction_status(),
        pgwire::messages::response::TransactionStatus::Idle
    );
    if ends && in_block && writes > 0 {
        client
            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                ErrorInfo::new(
                    "WARNING".into(),
                    "01000".into(),
                    format!(
                        "ROLLBACK cannot undo the {writes} statement(s) that changed data since BEGIN: \
                         Tessera commits each statement on its own"
                    ),
                ),
            )))
            .await?;
    }
    Ok(())
}

/// Reads a query response to its end (keeping its rows, which are small:
/// only a query followed by other statements in one simple query is read so).
async fn drain(mut q: QueryResponse) -> PgWireResult<QueryResponse> {
    use futures::StreamExt;
    let fields = q.row_schema();
    let tag = q.command_tag().to_string();
    let mut rows = Vec::new();
    while let Some(r) = q.data_rows().next().await {
        rows.push(r);
    }
    let mut out = QueryResponse::new(fields, futures::stream::iter(rows));
    out.set_command_tag(&tag);
    Ok(out)
}

/// `DEALLOCATE name` / `DISCARD ALL`: prepared statements and portals go.
fn deallocate<C>(client: &mut C, stmt: &Statement)
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let store = client.portal_store();
    if let Statement::Sql(s) = stmt {
        match s.as_ref() {
            ast::Statement::Deallocate { name, .. } if !name.value.eq_ignore_ascii_case("all") => {
                store.rm_statement(&name.value);
            }
            _ => store.clear_portals(),
        }
    }
}

fn error_info(e: &WireError) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), e.sqlstate().into(), e.to_string())
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let _ = types;
        let session = session_of(client)?;
        let mut statements = self.parse(sql).map_err(to_pg)?;
        if statements.len() > 1 {
            return Err(to_pg(WireError::Engine(
                tessera_engine::SqlError::Syntax(
                    "cannot insert multiple commands into a prepared statement".into(),
                )
                .into(),
            )));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let (result, params) = describe(&session, &self.shared, &statement)
            .await
            .map_err(to_pg)?;
        Ok(Some(Prepared {
            statement,
            params,
            result,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.params
            .iter()
            .map(|t| match t {
                Some(t) => arrow_pg::datatypes::into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.result {
            Some(schema) => encode::fields(schema, format.unwrap_or(&Format::UnifiedText)),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// Execute, with a portal's rows streamed to the socket: pgwire's own
    /// `on_execute` gathers all the rows of a fetch in memory first, which
    /// a 50-million-row result must not do. Otherwise the same steps.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::StreamExt;
        use pgwire::api::PgWireConnectionState as S;
        use pgwire::api::portal::PortalExecutionState as P;
        use pgwire::api::store::Entry;
        if !matches!(client.state(), S::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(S::QueryInProgress);
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let max_rows = message.max_rows as usize;
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        pgwire::messages::response::EmptyQueryResponse::new(),
                    ))
                    .await?;
                client.set_state(S::ReadyForQuery);
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        let state = portal.state();
        let initial = matches!(*state.lock().await, P::Initial);
        if initial {
            match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), max_rows).await? {
                Response::Query(results) => *state.lock().await = P::Suspended(results),
                other => {
                    match other {
                        Response::EmptyQuery => {
                            client
                                .feed(PgWireBackendMessage::EmptyQueryResponse(
                                    pgwire::messages::response::EmptyQueryResponse::new(),
                                ))
                                .await?;
                        }
                        Response::Execution(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                        }
                        Response::TransactionStart(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                            status = status.to_in_transaction_state();
                        }
                        Response::TransactionEnd(tag) => {
                            pgwire::api::query::send_execution_response(client, tag).await?;
                            status = status.to_idle_state();
                            client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
                        }
                        Response::Error(e) => {
                            client
                                .send(PgWireBackendMessage::ErrorResponse((*e).into()))
                                .await?;
                            status = status.to_error_state();
                        }
                        Response::CopyIn(r) => {
                            client.set_state(S::CopyInProgress(true));
                            pgwire::api::copy::send_copy_in_response(client, r).await?;
                        }
                        Response::CopyOut(r) => {
                            pgwire::api::copy::send_copy_out_response(client, r).await?;
                        }
                        Response::CopyBoth(r) => {
                            client.set_state(S::CopyInProgress(true));
                            pgwire::api::copy::send_copy_both_response(client, r).await?;
                        }
                        Response::Query(_) => {}
                    }
                    if !matches!(client.state(), S::CopyInProgress(_)) {
                        client.set_state(S::ReadyForQuery);
                        client.set_transaction_status(status);
                    }
                    return Ok(());
                }
            }
        }
        let mut guard = state.lock().await;
        let (more, tag) = match &mut *guard {
            P::Suspended(response) => {
                let tag = response.command_tag().to_owned();
                let rows = response.data_rows();
                let mut sent = 0usize;
                let mut more = true;
                while max_rows == 0 || sent < max_rows {
                    match rows.next().await {
                        Some(row) => {
                            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                            sent += 1;
                        }
                        None => {
                            more = false;
                            break;
                        }
                    }
                }
                (more, Tag::new(&tag).with_rows(sent))
            }
            P::Finished => (false, Tag::new("SELECT").with_rows(0)),
            P::Initial => return Err(PgWireError::PortalNotStarted),
        };
        if !more {
            *guard = P::Finished;
        }
        drop(guard);
        if more {
            client
                .send(PgWireBackendMessage::PortalSuspended(
                    pgwire::messages::extendedquery::PortalSuspended::new(),
                ))
                .await?;
        } else {
            client
                .send(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        client.set_state(S::ReadyForQuery);
        client.set_transaction_status(status);
        Ok(())
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let server = self.parser.get_parameter_types(&target.statement)?;
        let n = server.len().max(target.parameter_types.len());
        let params = (0..n)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| server.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.parser.get_result_schema(
            &target.statement.statement,
            Some(&target.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        session.begin_statement();
        let prepared = &portal.statement.statement;
        let inferred: Vec<Option<&DataType>> = prepared.params.iter().map(Option::as_ref).collect();
        let params = arrow_pg::datatypes::df::deserialize_parameters(portal, &inferred)?;
        let stmt = prepared.statement.clone();
        warn_rollback(client, &session, &stmt).await?;
        if let Statement::Sql(s) = &stmt
            && matches!(
                **s,
                ast::Statement::Discard { .. } | ast::Statement::Deallocate { .. }
            )
        {
            deallocate(client, &stmt);
        }
        match self
            .execute(&session, stmt, Some(&params), &portal.result_column_format)
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => Err(to_pg(e)),
        }
    }
}

#[async_trait]
impl pgwire::api::copy::CopyHandler for Handler {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use std::io::Write;
        let session = session_of(client)?;
        let mut copy = session.copy_in.lock();
        let Some(copy) = copy.as_mut() else {
            return Err(to_pg(WireError::Internal(
                "COPY data without a COPY".into(),
            )));
        };
        copy.bytes += data.data.len() as u64;
        copy.spool
            .as_file_mut()
            .write_all(&data.data)
            .map_err(|e| to_pg(WireError::Io(e)))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use std::io::Write;
        let session = session_of(client)?;
        let Some(mut copy) = session.copy_in.lock().take() else {
            return Err(to_pg(WireError::Internal(
                "COPY done without a COPY".into(),
            )));
        };
        copy.spool
            .as_file_mut()
            .flush()
            .map_err(|e| to_pg(WireError::Io(e)))?;
        // psql ends text data with a `\.` line: not a row.
        strip_end_marker(copy.spool.path()).map_err(|e| to_pg(WireError::Io(e)))?;
        let db = self.shared.db.clone();
        let deadline = self.deadline(&session);
        let path = copy.spool.path().to_path_buf();
        let statement = copy.statement;
        let out = self
            .guarded(
                &session,
                deadline,
                self.work(async move { Ok(db.copy_from_spool(statement, &path).await?) }),
            )
            .await
            .map_err(to_pg)?;
        drop(copy.spool);
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new(&out.tag).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(session) = session_of(client) {
            session.copy_in.lock().take();
        }
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}

/// Where an encrypted database gathers `COPY FROM STDIN` input: a
/// memory-backed file system.
const MEMORY_SPOOL: &str = "/dev/shm";

/// Removes a final `\.` line (the end-of-data marker of the text format,
/// which psql sends for `\copy … from stdin`).
fn strip_end_marker(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let tail_len = len.min(4);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let keep = if tail.ends_with(b"\n\\.\n") || tail.ends_with(b"\n\\.") {
        len - if tail.ends_with(b"\n") { 3 } else { 2 }
    } else if (len == 3 && tail == b"\\.\n") || (len == 2 && tail == b"\\.") {
        0
    } else {
        len
    };
    if keep != len {
        f.set_len(keep)?;
    }
    Ok(())
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for Handler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        if let Some(session) = self.shared.sessions.find(request.pid, &request.secret_key) {
            session.cancel();
        }
        self.shared
            .connections
            .cancel(request.pid, &request.secret_key)
            .await;
    }
}
