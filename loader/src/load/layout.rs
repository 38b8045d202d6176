//! A layout-mismatch refusal in a few lines: which type and field differ, what was expected
//! and what was found. abi_stable's own report (kept for `-v` and `doctor`) describes both
//! layouts in full and runs to hundreds of lines, naming the difference deep inside.

use abi_stable::{
    abi_stability::abi_checking::{
        check_layout_compatibility, AbiInstability, AbiInstabilityErrors, ExpectedFound,
    },
    type_layout::{TLFieldOrFunction, TypeLayout},
};

/// Differences shown at most; the rest are counted.
const SHOWN: usize = 3;

/// One line per difference between the layout the host expects and the library's
/// (abi_stable hands its loader only the formatted report, so the check is run again here for
/// its structured answer); `None` if the layouts turn out compatible.
pub(crate) fn summarize(
    expected: &'static TypeLayout,
    found: &'static TypeLayout,
) -> Option<String> {
    let errors: AbiInstabilityErrors = check_layout_compatibility(expected, found).err()?;
    let root = errors.interface.full_type().to_string();
    let mut lines = Vec::new();
    let mut total = 0;
    for e in errors.errors.iter() {
        let mut place = root.clone();
        for step in e.stack_trace.iter() {
            place.push('.');
            place.push_str(&name(&step.expected));
        }
        if let Some(TLFieldOrFunction::Field(field)) = e.stack_trace.last().map(|s| &s.expected) {
            place.push_str(&format!(" (a {})", field.full_type()));
        }
        for err in e.errs.iter() {
            total += 1;
            if lines.len() < SHOWN {
                lines.push(format!("{place}: {}", describe(err)));
            }
        }
    }
    if total > SHOWN {
        lines.push(format!("... and {} more differences", total - SHOWN));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn name(step: &TLFieldOrFunction) -> String {
    match step {
        TLFieldOrFunction::Field(field) => field.name().to_owned(),
        TLFieldOrFunction::Function(function) => function.name.as_str().to_owned(),
    }
}

/// `what: expected X, found Y`, each on one line.
fn pair<T>(what: &str, values: Option<ExpectedFound<String>>, _: &ExpectedFound<T>) -> String {
    match values {
        Some(v) => format!(
            "{what}: expected {}, found {}",
            one_line(&v.expected),
            one_line(&v.found)
        ),
        None => what.to_owned(),
    }
}

fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 120 {
        let head: String = joined.chars().take(117).collect();
        format!("{head}...")
    } else {
        joined
    }
}

fn describe(err: &AbiInstability) -> String {
    use AbiInstability as A;
    match err {
        A::Name(v) => pair("type", v.display_str(), v),
        A::Package(v) => pair("package", v.display_str(), v),
        A::PackageVersion(v) => pair("abi_stable package version", v.display_str(), v),
        A::Size(v) => pair("size", v.display_str(), v),
        A::Alignment(v) => pair("alignment", v.display_str(), v),
        A::MismatchedPrimitive(v) => pair("primitive type", v.debug_str(), v),
        A::TLDataDiscriminant(v) => pair("kind of type", v.debug_str(), v),
        A::FieldCountMismatch(v) => pair("field count", v.display_str(), v),
        A::UnexpectedField(v) => pair("field", v.display_str(), v),
        A::TooManyVariants(v) => pair("variant count", v.display_str(), v),
        A::UnexpectedVariant(v) => pair("variant", v.debug_str(), v),
        A::MismatchedPrefixSize(v) => pair("prefix size", v.display_str(), v),
        A::GenericParamCount(v) => pair("generic parameters", v.display_str(), v),
        A::FnQualifierMismatch(v) => pair("function qualifiers", v.display_str(), v),
        A::FnLifetimeMismatch(v) => pair("function lifetimes", v.display_str(), v),
        A::FieldLifetimeMismatch(v) => pair("field lifetimes", v.display_str(), v),
        A::ReprAttr(v) => pair("repr", v.debug_str(), v),
        A::EnumDiscriminant(v) => pair("discriminant", v.debug_str(), v),
        other => one_line(&format!("{other:?}")),
    }
}
