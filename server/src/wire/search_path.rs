//! `search_path` as PostgreSQL reads it: an unqualified table name is
//! looked up in each schema of the path in turn, and the first that holds
//! it wins; a new table or view goes in the first schema of the path that
//! exists.
//!
//! DataFusion resolves unqualified names in one default schema, so before a
//! statement of a session is planned or run, [`qualify`] writes each
//! unqualified name as `schema.name` of the table it resolves to. Names
//! no schema of the path holds are left as written (the planner then says
//! what is missing, or finds them among `pg_catalog`'s); the names of
//! common table expressions are never touched. Writes and `COPY` resolve
//! the same way, so privileges are checked on the very table written.

use tessera_sql::datafusion::sql::sqlparser::ast;

/// What the catalog holds, as [`qualify`] asks it.
pub trait Catalog {
    /// Whether schema `schema` exists.
    fn has_schema(&self, schema: &str) -> bool;
    /// Whether `schema` holds a table or view named `name`.
    fn holds(&self, schema: &str, name: &str) -> bool;
}

/// A session's DataFusion catalog (tables, views, profile tables).
pub struct SessionCatalog<'a>(pub &'a tessera_sql::datafusion::prelude::SessionContext);

impl std::fmt::Debug for SessionCatalog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCatalog")
    }
}

impl Catalog for SessionCatalog<'_> {
    fn has_schema(&self, schema: &str) -> bool {
        self.0
            .catalog(tessera_sql::CATALOG)
            .is_some_and(|c| c.schema(schema).is_some())
    }

    fn holds(&self, schema: &str, name: &str) -> bool {
        self.0
            .catalog(tessera_sql::CATALOG)
            .and_then(|c| c.schema(schema))
            .is_some_and(|s| s.table_exist(name))
    }
}

/// A name part as the catalog keeps it (PostgreSQL folds unquoted names).
fn folded(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The single part of an unqualified name.
fn unqualified(name: &ast::ObjectName) -> Option<&ast::Ident> {
    match name.0.as_slice() {
        [part] => part.as_ident(),
        _ => None,
    }
}

/// `name` in `schema`.
fn in_schema(schema: &str, name: &ast::Ident) -> ast::ObjectName {
    ast::ObjectName::from(vec![ast::Ident::with_quote('"', schema), name.clone()])
}

/// Rewrites the unqualified table names of `stmt` along `path` (see the
/// module's text).
pub fn qualify(stmt: &mut ast::Statement, path: &[String], catalog: &dyn Catalog) {
    // Where a new relation goes.
    let home = path.iter().find(|s| catalog.has_schema(s));
    let created = match stmt {
        ast::Statement::CreateTable(t) => Some(&mut t.name),
        ast::Statement::CreateView(v) => Some(&mut v.name),
        _ => None,
    };
    if let (Some(name), Some(home)) = (created, home)
        && let Some(part) = unqualified(name).cloned()
    {
        *name = in_schema(home, &part);
    }
    let mut ctes = std::collections::HashSet::new();
    struct Ctes<'a>(&'a mut std::collections::HashSet<String>);
    impl ast::Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> std::ops::ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0.insert(folded(&cte.alias.name));
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::Visit::visit(&*stmt, &mut Ctes(&mut ctes));
    let resolve = |name: &mut ast::ObjectName| {
        if let Some(part) = unqualified(name).cloned() {
            let n = folded(&part);
            if !ctes.contains(&n)
                && let Some(schema) = path.iter().find(|s| catalog.holds(s, &n))
            {
                *name = in_schema(schema, &part);
            }
        }
    };
    match stmt {
        ast::Statement::Copy {
            source: ast::CopySource::Table { table_name, .. },
            ..
        } => resolve(table_name),
        ast::Statement::Drop { names, .. } => names.iter_mut().for_each(resolve),
        _ => {}
    }
    let _ = ast::visit_relations_mut(stmt, |name| {
        resolve(name);
        std::ops::ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static [(&'static str, &'static str)]);

    impl Catalog for Fixed {
        fn has_schema(&self, schema: &str) -> bool {
            self.0.iter().any(|(s, _)| *s == schema)
        }
        fn holds(&self, schema: &str, name: &str) -> bool {
            self.0.iter().any(|(s, t)| *s == schema && *t == name)
        }
    }

    fn rewritten(sql: &str, path: &[&str]) -> String {
        let mut stmt = tessera_sql::datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &tessera_sql::datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap()
        .remove(0);
        let catalog = Fixed(&[
            ("crm", "contacts"),
            ("crm", "orders"),
            ("public", "orders"),
            ("public", "events"),
        ]);
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        qualify(&mut stmt, &path, &catalog);
        stmt.to_string()
    }

    #[test]
    fn the_first_schema_holding_a_name_wins() {
        assert_eq!(
            rewritten(
                "SELECT * FROM orders JOIN events USING (id) JOIN contacts USING (id)",
                &["crm", "public"]
            ),
            "SELECT * FROM \"crm\".orders JOIN \"public\".events USING(id) JOIN \"crm\".contacts USING(id)"
        );
        assert_eq!(
            rewritten("SELECT * FROM orders", &["public", "crm"]),
            "SELECT * FROM \"public\".orders"
        );
        // Qualified names, unknown names and CTEs are left as written.
        assert_eq!(
            rewritten(
                "WITH orders AS (SELECT 1) SELECT * FROM orders, public.events, nowhere",
                &["crm"]
            ),
            "WITH orders AS (SELECT 1) SELECT * FROM orders, public.events, nowhere"
        );
    }

    #[test]
    fn writes_copy_drop_and_new_relations_follow_the_path() {
        assert_eq!(
            rewritten(
                "INSERT INTO orders SELECT * FROM events",
                &["crm", "public"]
            ),
            "INSERT INTO \"crm\".orders SELECT * FROM \"public\".events"
        );
        assert_eq!(
            rewritten("COPY contacts FROM STDIN", &["crm"]),
            "COPY \"crm\".contacts FROM STDIN"
        );
        assert_eq!(
            rewritten("DROP TABLE contacts", &["crm"]),
            "DROP TABLE \"crm\".contacts"
        );
        assert_eq!(
            rewritten("CREATE TABLE fresh (a INT)", &["nope", "crm", "public"]),
            "CREATE TABLE \"crm\".fresh (a INT)"
        );
        assert_eq!(
            rewritten("CREATE VIEW v AS SELECT * FROM orders", &["public"]),
            "CREATE VIEW \"public\".v AS SELECT * FROM \"public\".orders"
        );
    }
}
