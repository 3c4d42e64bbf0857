//! Named arguments of table functions: `segment('vip', purpose =>
//! 'email_marketing')`.
//!
//! DataFusion plans a table function's arguments by position only, so
//! before planning each call with named arguments is rewritten into the
//! positional form from the parameter names its function registered
//! ([`SqlEngine::register_table_function`](crate::SqlEngine::register_table_function)):
//! positional arguments first, as in PostgreSQL, then each named one at
//! its parameter's place; a parameter skipped before a named one is passed
//! as NULL (the function's default).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, TableFactor, Value, VisitMut, VisitorMut,
};
use parking_lot::RwLock;

use crate::error::{Result, SqlError};

/// The parameter names of each table function that takes named arguments.
#[derive(Debug, Default)]
pub(crate) struct TableParams(RwLock<HashMap<String, Vec<String>>>);

impl TableParams {
    pub fn set(&self, function: &str, params: &[&str]) {
        self.0.write().insert(
            function.to_lowercase(),
            params.iter().map(|p| p.to_lowercase()).collect(),
        );
    }

    /// Rewrites every call with named arguments in `stmt` positionally.
    pub fn bind(&self, stmt: &mut ast::Statement) -> Result<()> {
        let params = self.0.read();
        let mut v = Binder { params: &params };
        match stmt.visit(&mut v) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

struct Binder<'a> {
    params: &'a HashMap<String, Vec<String>>,
}

/// The name of a named argument, if it is one.
fn arg_name(arg: &FunctionArg) -> Option<String> {
    match arg {
        FunctionArg::Named { name, .. } => Some(name.value.to_lowercase()),
        FunctionArg::ExprNamed {
            name: Expr::Identifier(name),
            ..
        } => Some(name.value.to_lowercase()),
        _ => None,
    }
}

impl Binder<'_> {
    fn rewrite(&self, function: &str, args: &mut Vec<FunctionArg>) -> Result<()> {
        if args.iter().all(|a| arg_name(a).is_none()) {
            return Ok(());
        }
        let Some(params) = self.params.get(&function.to_lowercase()) else {
            return Err(SqlError::InvalidParameter(format!(
                "{function}() takes no named arguments"
            )));
        };
        let mut out: Vec<Option<FunctionArg>> = Vec::new();
        let mut named = false;
        for arg in args.drain(..) {
            let Some(name) = arg_name(&arg) else {
                if named {
                    return Err(SqlError::Syntax(format!(
                        "{function}(): a positional argument cannot follow a named one"
                    )));
                }
                out.push(Some(arg));
                continue;
            };
            named = true;
            let Some(at) = params.iter().position(|p| *p == name) else {
                return Err(SqlError::InvalidParameter(format!(
                    "{function}() has no parameter \"{name}\" (its parameters: {})",
                    params.join(", ")
                )));
            };
            if out.len() <= at {
                out.resize(at + 1, None);
            }
            if out[at].is_some() {
                return Err(SqlError::InvalidParameter(format!(
                    "{function}(): argument \"{name}\" is given twice"
                )));
            }
            let value = match arg {
                FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
                FunctionArg::Unnamed(arg) => arg,
            };
            out[at] = Some(FunctionArg::Unnamed(value));
        }
        args.extend(out.into_iter().map(|a| {
            a.unwrap_or_else(|| {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(Value::Null.into())))
            })
        }));
        Ok(())
    }
}

impl VisitorMut for Binder<'_> {
    type Break = SqlError;

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<SqlError> {
        let found = match t {
            TableFactor::Table {
                name,
                args: Some(a),
                ..
            } => Some((name.to_string(), &mut a.args)),
            TableFactor::Function { name, args, .. } => Some((name.to_string(), args)),
            _ => None,
        };
        if let Some((name, args)) = found {
            let short = name.rsplit('.').next().unwrap_or(&name).trim_matches('"');
            if let Err(e) = self.rewrite(short, args) {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse};

    fn bound(sql: &str) -> Result<String> {
        let p = TableParams::default();
        p.set("segment", &["name", "purpose"]);
        p.set("changes", &["name", "since", "purpose"]);
        let Statement::Sql(mut s) = parse(sql)?.remove(0) else {
            panic!("{sql}");
        };
        p.bind(&mut s)?;
        Ok(s.to_string())
    }

    #[test]
    fn named_arguments_take_their_parameters_place() {
        assert_eq!(
            bound("SELECT * FROM segment('vip', purpose => 'email')").unwrap(),
            "SELECT * FROM segment('vip', 'email')"
        );
        assert_eq!(
            bound("SELECT * FROM segment(purpose => 'email', name => 'vip')").unwrap(),
            "SELECT * FROM segment('vip', 'email')"
        );
        assert_eq!(
            bound("SELECT * FROM changes('vip', purpose => 'sms')").unwrap(),
            "SELECT * FROM changes('vip', NULL, 'sms')"
        );
        // Inside a subquery and a join too; positional calls stay as they are.
        assert_eq!(
            bound("SELECT * FROM t JOIN (SELECT * FROM segment('a', purpose => 'p')) s USING (x)")
                .unwrap(),
            "SELECT * FROM t JOIN (SELECT * FROM segment('a', 'p')) s USING(x)"
        );
        assert_eq!(
            bound("SELECT * FROM segment('vip')").unwrap(),
            "SELECT * FROM segment('vip')"
        );
    }

    #[test]
    fn wrong_named_arguments_are_refused() {
        for sql in [
            "SELECT * FROM segment('vip', purpos => 'email')",
            "SELECT * FROM segment('vip', name => 'x')",
            "SELECT * FROM unknown_fn(a => 1)",
            "SELECT * FROM segment(purpose => 'e', 'vip')",
        ] {
            assert!(bound(sql).is_err(), "{sql}");
        }
    }
}
