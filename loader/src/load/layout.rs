//! Saying what differs when abi_stable refuses a plugin's layout.
//!
//! abi_stable's own report of a layout mismatch prints both root-module layouts in full before
//! the differences: about a thousand lines for plugin-api, whose first dozen name nothing.
//! [`describe`] walks the structured errors instead (abi_stable's [`AbiInstabilityErrors`]:
//! one entry per nested type that differs, each with the path of fields leading to it and the
//! differences found) and writes a few lines: the type and field, what was expected and what
//! was found. The whole report stays available as the error's `full_report`.

use std::fmt::Write as _;

use abi_stable::{
    abi_stability::abi_checking::{
        check_layout_compatibility, AbiInstability, AbiInstabilityError, AbiInstabilityErrors,
        ExpectedFound,
    },
    library::{AbiHeader, LibHeader},
    type_layout::{TLField, TLFieldOrFunction, TypeLayout},
    StableAbi,
};
use plugin_api::PluginModRef;

/// At most this many differences are listed; the rest are counted.
const MAX_LISTED: usize = 6;

/// A few lines saying how the root-module layout in `header` differs from the host's, or `None`
/// when the layout checker finds no difference (or the library has no layout constant).
pub(crate) fn describe(header: &LibHeader) -> Option<String> {
    let found = header.layout()?;
    let errors = check_layout_compatibility(<PluginModRef as StableAbi>::LAYOUT, found).err()?;
    Some(summarize(&errors))
}

/// Whether the one difference between the host's root-module layout and `header`'s is that the
/// plugin's view of the host context vtable is shorter: the plugin was built against an older
/// minor version of plugin-api (1.0 in a 1.1 host), which knows only the entries it had.
///
/// abi_stable's checker assumes that vtables flow from the library to the host, so it lets a
/// newer library through with a longer vtable and refuses an older one. The host context flows
/// the other way: the host makes it and the plugin calls into it. An older plugin reads the
/// entries it knows from the front of the host's longer vtable (a prefix type keeps its
/// prefix where it was), which is what the evolution rules promise. Any other difference
/// (another field count, a field of another name or type, another type) still refuses it.
pub(crate) fn only_older_context(header: &LibHeader) -> bool {
    let Some(found) = header.layout() else {
        return false;
    };
    let Err(errors) = check_layout_compatibility(<PluginModRef as StableAbi>::LAYOUT, found) else {
        return false;
    };
    // abi_stable lists each type on the path to a difference, most with no finding of their own.
    let mut found_any = false;
    let tolerable = errors
        .errors
        .iter()
        .filter(|error| !error.errs.is_empty())
        .all(|error| {
            found_any = true;
            let in_context_vtable = match error.stack_trace.last() {
                Some(ExpectedFound {
                    expected: TLFieldOrFunction::Field(field),
                    ..
                }) => {
                    let layout = field.layout();
                    layout.name() == "VTable"
                        && layout
                            .mod_path()
                            .to_string()
                            .ends_with("::HostContext_trait")
                }
                _ => false,
            };
            in_context_vtable
                && error.errs.iter().all(
                    |e| matches!(e, AbiInstability::FieldCountMismatch(n) if n.expected > n.found),
                )
        });
    found_any && tolerable
}

/// The differences in `errors`, one line each, in abi_stable's order (outer types first).
pub(crate) fn summarize(errors: &AbiInstabilityErrors) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if !lines.contains(&line) {
            lines.push(line);
        }
    };
    for error in errors.errors.iter() {
        let place = place(errors.interface, error);
        let versions = error.stack_trace.last().and_then(|step| match step {
            ExpectedFound {
                expected: TLFieldOrFunction::Field(e),
                found: TLFieldOrFunction::Field(f),
            } => Some((e.layout().package_version(), f.layout().package_version())),
            _ => None,
        });
        for instability in error.errs.iter() {
            let line = match (instability, &versions) {
                (AbiInstability::Package(v), Some((e_version, f_version))) => Some(format!(
                    "package: expected {} {e_version}, found {} {f_version}",
                    v.expected, v.found
                )),
                _ => difference(instability),
            };
            if let Some(line) = line {
                push(format!("{place}: {line}"));
            }
        }
        // abi_stable stops at a type from another package or of another name without looking
        // inside it; its fields say what the plugin's author changed.
        let stops = error
            .errs
            .iter()
            .any(|e| matches!(e, AbiInstability::Package(_) | AbiInstability::Name(_)));
        if let (true, Some(step)) = (stops, error.stack_trace.last()) {
            if let (TLFieldOrFunction::Field(expected), TLFieldOrFunction::Field(found)) =
                (&step.expected, &step.found)
            {
                let name = expected.layout().name();
                for line in field_differences(name, expected.layout(), found.layout(), 0) {
                    push(line);
                }
            }
        }
    }
    let mut out = String::new();
    let total = lines.len();
    for line in lines.iter().take(MAX_LISTED) {
        let _ = writeln!(out, "{line}");
    }
    if total > MAX_LISTED {
        let _ = writeln!(out, "and {} more differences", total - MAX_LISTED);
    }
    if total == 0 {
        let _ = writeln!(
            out,
            "{} differs from the host's (no single difference named; see the full report)",
            errors.interface.full_type()
        );
    }
    out.trim_end().to_owned()
}

/// `PluginMod.panic_unwinds (bool)`: the type where the check started and the fields walked
/// to reach the difference, with the field's expected type.
fn place(root: &TypeLayout, error: &AbiInstabilityError) -> String {
    let mut place = root.name().to_owned();
    let mut ty = None;
    for step in error.stack_trace.iter() {
        let ExpectedFound { expected, .. } = step;
        match expected {
            // The pointee of a transparent wrapper (the root module's `PrefixRef`): named by
            // its type, not as field `0`.
            TLFieldOrFunction::Field(field) if field.name() == "0" => {
                place = field.layout().name().to_owned();
                ty = None;
            }
            TLFieldOrFunction::Field(field) => {
                place.push('.');
                place.push_str(field.name());
                ty = Some(field.layout().full_type().to_string());
            }
            TLFieldOrFunction::Function(function) => {
                place.push('.');
                place.push_str(function.name.as_str());
                ty = Some("fn".to_owned());
            }
        }
    }
    match ty {
        Some(ty) => format!("{place} ({ty})"),
        None => place,
    }
}

/// How the fields of two layouts of one type differ: `Type.field: expected X, found Y`, looking
/// into fields of the same name whose types come from different packages (two levels deep).
fn field_differences(
    place: &str,
    expected: &'static TypeLayout,
    found: &'static TypeLayout,
    depth: usize,
) -> Vec<String> {
    let fields = |layout: &'static TypeLayout| -> Vec<TLField> {
        layout
            .get_fields()
            .map(|fields| fields.iter().collect())
            .unwrap_or_default()
    };
    let (expected_fields, found_fields) = (fields(expected), fields(found));
    let mut lines = Vec::new();
    for (index, (e, f)) in expected_fields.iter().zip(&found_fields).enumerate() {
        if e.name() != f.name() {
            lines.push(format!(
                "{place} field {index}: expected {}, found {}",
                e.name(),
                f.name()
            ));
            continue;
        }
        let (e_type, f_type) = (field_type(e), field_type(f));
        let (e_layout, f_layout) = (e.layout(), f.layout());
        if e.is_function() && f.is_function() && e_type != f_type {
            lines.push(format!(
                "{place}.{}: expected {e_type}, found {f_type}",
                e.name()
            ));
        } else if e_type != f_type || e_layout.size() != f_layout.size() {
            lines.push(format!(
                "{place}.{}: expected {e_type} (size {}), found {f_type} (size {})",
                e.name(),
                e_layout.size(),
                f_layout.size()
            ));
        } else if depth < 1 && e_layout.package() != f_layout.package() {
            let inner = format!("{place}.{}", e.name());
            lines.extend(field_differences(&inner, e_layout, f_layout, depth + 1));
        }
    }
    let (e_len, f_len) = (expected_fields.len(), found_fields.len());
    if e_len != f_len {
        let names = |fields: &[TLField]| -> String {
            fields
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!(
            "{place}: expected {e_len} fields ({}), found {f_len} ({})",
            names(&expected_fields),
            names(&found_fields)
        ));
    }
    lines
}

/// A field's type as written: the signature for function pointers.
fn field_type(field: &TLField) -> String {
    if field.is_function() {
        if let Some(function) = field.function_range().iter().next() {
            let params: Vec<String> = function
                .param_type_layouts
                .iter()
                .map(|layout| layout().full_type().to_string())
                .collect();
            // abi_stable keeps the return type private; its Display ends with "->Type".
            let text = function.to_string();
            let returns = text
                .lines()
                .next()
                .and_then(|line| line.rsplit_once("->"))
                .map_or("()", |(_, returns)| returns.trim());
            return format!("fn({}) -> {returns}", params.join(", "));
        }
    }
    field.full_type().to_string()
}

fn pair(what: &str, values: Option<ExpectedFound<String>>) -> Option<String> {
    let values = values?;
    Some(format!(
        "{what}: expected {}, found {}",
        one_line(&values.expected),
        one_line(&values.found)
    ))
}

/// Multi-line values (field layouts) as one short line.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 120;
    if joined.chars().count() > MAX {
        let cut: String = joined.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// One difference as `what: expected X, found Y`.
fn difference(instability: &AbiInstability) -> Option<String> {
    use AbiInstability as AI;
    match instability {
        AI::Name(v) => pair("type", v.display_str()),
        AI::Package(v) => pair("package", v.display_str()),
        AI::PackageVersion(v) => pair("package version", v.display_str()),
        AI::Size(v) => pair("size", v.display_str()),
        AI::Alignment(v) => pair("alignment", v.display_str()),
        AI::NonZeroness(v) => pair("non-zero", v.display_str()),
        AI::MismatchedPrefixSize(v) => pair("prefix size", v.display_str()),
        AI::GenericParamCount(v) => pair("generic parameters", v.display_str()),
        AI::TLDataDiscriminant(v) => pair("kind of type", v.debug_str()),
        AI::MismatchedPrimitive(v) => pair("primitive", v.debug_str()),
        AI::FieldCountMismatch(v) => pair("field count", v.display_str()),
        AI::UnexpectedField(v) => pair(
            "field",
            Some(
                v.as_ref()
                    .map(|field| format!("{} ({})", field.name(), field.layout().full_type())),
            ),
        ),
        AI::FieldLifetimeMismatch(v) => pair(
            "field lifetimes",
            Some(v.as_ref().map(|field| field.name().to_owned())),
        ),
        AI::FnLifetimeMismatch(v) | AI::FnQualifierMismatch(v) => pair(
            "function pointer",
            Some(v.as_ref().map(|function| function.to_string())),
        ),
        AI::TooManyVariants(v) => pair("variant count", v.display_str()),
        AI::UnexpectedVariant(v) => pair("variant", v.display_str()),
        AI::ReprAttr(v) => pair("repr", v.debug_str()),
        AI::EnumDiscriminant(v) => pair("discriminant", v.debug_str()),
        AI::MismatchedPrefixConditionality(v) => pair("conditional prefix fields", v.debug_str()),
        AI::MismatchedExhaustiveness(v) => pair("exhaustiveness", v.debug_str()),
        AI::MismatchedConstParam(v) => pair("const parameter", v.debug_str()),
        AI::PackageVersionParseError(e) => Some(format!("unparseable package version: {e}")),
        AI::IncompatibleWithNonExhaustive(e) => Some(one_line(&e.to_string())),
        AI::ExtraCheckError(e) => Some(one_line(&format!("{:?}", e))),
        AI::TagError { err } => Some(one_line(&err.to_string())),
        AI::NoneExtraChecks => {
            Some("the host's type has extra checks, the plugin's none".to_owned())
        }
        AI::CyclicTypeChecking { interface, .. } => {
            Some(format!("cyclic layout check of {}", interface.full_type()))
        }
        AI::ReentrantLayoutCheckingCall => None,
    }
}

/// The message for a library whose abi_stable header is not this host's: abi_stable's ABI
/// version on both sides.
pub(crate) fn header_mismatch(found: &AbiHeader) -> String {
    let host = AbiHeader::VALUE;
    if found.magic_string != host.magic_string {
        return "its abi_stable header is not one this host knows (another abi_stable, or not \
                abi_stable at all)"
            .to_owned();
    }
    format!(
        "it was built with abi_stable ABI {}.{}, this host uses {}.{}",
        found.abi_major, found.abi_minor, host.abi_major, host.abi_minor
    )
}
