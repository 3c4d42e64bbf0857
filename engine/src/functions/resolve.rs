//! `unify(kind, value)` and `unify(space, kind, value)`: the profile an
//! identifier resolves to now, after normalisation (`NULL` when the graph
//! has not seen it, or it is junk).
//!
//! ```sql
//! SELECT unify('email', ' Marie.Dupont+promo@GMail.com');
//! ```
//!
//! With two arguments the space is the one that has the kind (ambiguous
//! when several do: name the space).
//!
//! `unify_current(space, profile_id)`: the profile a (possibly retired)
//! profile id belongs to now, following the merge lineage; for ids kept
//! outside Tessera (an export, a marketing tool).

use std::sync::Arc;

use tessera_sql::datafusion::arrow::array::{Array, AsArray, Int64Array};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::DataType;
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::{invalid, kind_index, space_named};
use crate::spaces::Spaces;

/// The `unify` function.
#[derive(Debug)]
pub struct Unify {
    spaces: Arc<Spaces>,
    signature: Signature,
}

impl Unify {
    /// Over the spaces of one database.
    pub fn new(spaces: Arc<Spaces>) -> Self {
        Self {
            spaces,
            signature: Signature::one_of(
                vec![TypeSignature::String(2), TypeSignature::String(3)],
                // The graph changes between statements.
                Volatility::Volatile,
            ),
        }
    }
}

crate::udf_identity!(Unify, "unify", spaces);

impl ScalarUDFImpl for Unify {
    fn name(&self) -> &str {
        "unify"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays
            .iter()
            .map(|a| cast(a, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<_> = texts.iter().map(|a| a.as_string::<i32>()).collect();
        let (space_col, kind_col, value_col) = match texts.as_slice() {
            [k, v] => (None, *k, *v),
            [s, k, v] => (Some(*s), *k, *v),
            _ => {
                return Err(invalid(
                    "unify takes (kind, value) or (space, kind, value)".into(),
                ));
            }
        };
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if kind_col.is_null(row)
                || value_col.is_null(row)
                || space_col.is_some_and(|s| s.is_null(row))
            {
                out.push(None);
                continue;
            }
            let kind = kind_col.value(row);
            let space = match space_col {
                Some(s) => space_named(&self.spaces, s.value(row))?,
                None => self.only_space_with(kind)?,
            };
            let k = kind_index(&space, kind)?;
            let spec = &space.spec.config;
            let Some(normalized) = spec.kinds[k]
                .normalizer
                .apply(value_col.value(row), spec.region)
            else {
                out.push(None);
                continue;
            };
            let st = space.state().map_err(crate::EngineError::into_datafusion)?;
            out.push(st.graph.profile_of(k, &normalized).map(|p| p as i64));
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

impl Unify {
    fn only_space_with(&self, kind: &str) -> DfResult<Arc<crate::space::Space>> {
        let kind = kind.trim().to_lowercase();
        let with: Vec<_> = self
            .spaces
            .all()
            .into_iter()
            .filter(|s| s.spec.config.kinds.iter().any(|k| k.name == kind))
            .collect();
        match with.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] => Err(tessera_sql::SqlError::UndefinedObject(format!(
                "no profile space has identifiers of kind \"{kind}\" (UNIFY defines one)"
            ))
            .into_datafusion()),
            _ => Err(invalid(format!(
                "several profile spaces have identifiers of kind \"{kind}\"; name one: unify('space', '{kind}', value)"
            ))),
        }
    }
}

/// The `unify_current` function.
#[derive(Debug)]
pub struct UnifyCurrent {
    spaces: Arc<Spaces>,
    signature: Signature,
}

impl UnifyCurrent {
    /// Over the spaces of one database.
    pub fn new(spaces: Arc<Spaces>) -> Self {
        Self {
            spaces,
            signature: Signature::any(2, Volatility::Volatile),
        }
    }
}

crate::udf_identity!(UnifyCurrent, "unify_current", spaces);

impl ScalarUDFImpl for UnifyCurrent {
    fn name(&self) -> &str {
        "unify_current"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [spaces, ids] = arrays.as_slice() else {
            return Err(invalid("unify_current takes (space, profile_id)".into()));
        };
        let spaces = cast(spaces, &DataType::Utf8)?;
        let spaces = spaces.as_string::<i32>();
        let ids = cast(ids, &DataType::Int64)?;
        let ids = ids.as_primitive::<tessera_sql::datafusion::arrow::datatypes::Int64Type>();
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if spaces.is_null(row) || ids.is_null(row) {
                out.push(None);
                continue;
            }
            let space = space_named(&self.spaces, spaces.value(row))?;
            let id = ids.value(row);
            out.push(u64::try_from(id).ok().map(|u| space.current(u) as i64));
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}
