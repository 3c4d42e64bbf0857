//! `has_consent(profile_id, 'purpose' [, 'space'])`: whether the person's
//! latest decision for the purpose is a grant (`false` without any
//! decision); see [`crate::privacy::consent`]. The space may be left out
//! when only one space has a consent record.

use std::sync::Arc;

use tessera_sql::SqlError;
use tessera_sql::datafusion::arrow::array::{Array, AsArray, BooleanArray};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Int64Type};
use tessera_sql::datafusion::common::ScalarValue;
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::{invalid, space_named};
use crate::EngineError;
use crate::privacy::consent::{Consents, Decisions};
use crate::space::Space;
use crate::spaces::Spaces;

/// `has_consent(profile_id, purpose [, space])`.
#[derive(Debug)]
pub struct HasConsent {
    spaces: Arc<Spaces>,
    consents: Arc<Consents>,
    signature: Signature,
}

impl HasConsent {
    /// The function.
    pub fn new(spaces: Arc<Spaces>, consents: Arc<Consents>) -> Self {
        Self {
            spaces,
            consents,
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Volatile,
            ),
        }
    }
}

crate::udf_identity!(HasConsent, "has_consent", consents);

/// The space a consent question is about: the one named, or the only one
/// with a consent record.
pub fn consent_space(
    spaces: &Spaces,
    consents: &Consents,
    name: Option<&str>,
) -> DfResult<Arc<Space>> {
    if let Some(n) = name {
        return space_named(spaces, n);
    }
    let with = consents.spaces();
    match with.as_slice() {
        [one] => spaces.get(one).ok_or_else(|| {
            SqlError::UndefinedObject(format!("profile space {one} does not exist any more"))
                .into_datafusion()
        }),
        [] => Err(SqlError::NotInPrerequisiteState(
            "no profile space has a consent record; declare one with ALTER UNIFY space SET CONSENT FROM table (purpose, granted, recorded_at)"
                .into(),
        )
        .into_datafusion()),
        many => Err(invalid(format!(
            "{} profile spaces have a consent record: name one, as in has_consent(profile_id, 'email_marketing', '{}')",
            many.len(),
            many[0]
        ))),
    }
}

fn text(v: &ColumnarValue) -> Option<Option<String>> {
    match v {
        ColumnarValue::Scalar(s) => Some((!s.is_null()).then(|| match s {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::Utf8View(Some(t))
            | ScalarValue::LargeUtf8(Some(t)) => t.clone(),
            other => other.to_string(),
        })),
        ColumnarValue::Array(_) => None,
    }
}

impl ScalarUDFImpl for HasConsent {
    fn name(&self) -> &str {
        "has_consent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let space_name = match args.args.get(2) {
            None => None,
            Some(v) => match text(v) {
                Some(Some(n)) => Some(n),
                Some(None) => None,
                None => return Err(invalid("has_consent: the space is a constant".into())),
            },
        };
        let space = consent_space(&self.spaces, &self.consents, space_name.as_deref())?;
        let decisions: Arc<Decisions> = self
            .consents
            .decisions(&space)
            .map_err(EngineError::into_datafusion)?;
        let arrays = ColumnarValue::values_to_arrays(&args.args[..2])?;
        let ids = cast(&arrays[0], &DataType::Int64)?;
        // A retired id (merged into another) asks about its survivor.
        let ids = space.map_ids(ids.as_primitive::<Int64Type>());
        let out: BooleanArray = match text(&args.args[1]) {
            Some(None) => (0..ids.len()).map(|_| None).collect(),
            Some(Some(purpose)) => {
                let granted = decisions.granted(&purpose);
                ids.iter()
                    .map(|v| v.map(|id| u32::try_from(id).is_ok_and(|id| granted.contains(id))))
                    .collect()
            }
            None => {
                let purposes = cast(&arrays[1], &DataType::Utf8)?;
                let purposes = purposes.as_string::<i32>();
                (0..ids.len())
                    .map(|i| {
                        (!ids.is_null(i) && !purposes.is_null(i)).then(|| {
                            u32::try_from(ids.value(i))
                                .is_ok_and(|id| decisions.has(id, purposes.value(i)))
                        })
                    })
                    .collect()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
