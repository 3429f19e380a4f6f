//! Parsing of attribute options shared by `#[task]`, `#[process]` and `#[data]`: keys, duplicate
//! detection, durations, resource lists and the crate path.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{bracketed, Ident, LitInt, LitStr, Path, Token};

/// Collects errors so all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// An error under all of `tokens` (on stable, `span()` of a node is only its first token).
    pub(crate) fn under(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|e| e.clone().into_iter().map(|e| e.to_string()))
            .collect()
    }

    pub(crate) fn into_tokens(self) -> TokenStream {
        self.0.map(|e| e.into_compile_error()).unwrap_or_default()
    }
}

/// Macros every module sees without an import (std's prelude, its built-in attributes, and
/// minder's own): a path of one of these names is not probed for a task's access macro (a
/// `use` of it would bring the macro), and a task of one of these names gets no access macro
/// (it would shadow the macro in the task's module).
pub(crate) fn is_prelude_macro(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "assert",
        "assert_eq",
        "assert_ne",
        "bench",
        "cfg",
        "cfg_accessible",
        "cfg_eval",
        "column",
        "compile_error",
        "concat",
        "dbg",
        "debug_assert",
        "debug_assert_eq",
        "debug_assert_ne",
        "derive",
        "env",
        "eprint",
        "eprintln",
        "file",
        "format",
        "format_args",
        "global_allocator",
        "include",
        "include_bytes",
        "include_str",
        "is_x86_feature_detected",
        "line",
        "matches",
        "module_path",
        "option_env",
        "panic",
        "print",
        "println",
        "stringify",
        "test",
        "test_case",
        "thread_local",
        "todo",
        "unimplemented",
        "unreachable",
        "vec",
        "write",
        "writeln",
        "data",
        "parallel",
        "process",
        "task",
    ];
    NAMES.contains(&name.strip_prefix("r#").unwrap_or(name))
}

/// Source text of a type or path as a person writes it: `&[String]`, not `& [String]`.
pub(crate) fn source_text(tokens: impl ToTokens) -> String {
    let raw = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let next = chars.peek().copied().unwrap_or(' ');
            let glued_after = out.ends_with("::") || out.ends_with(['&', '<', '(', '[']);
            let glued_before = matches!(next, '>' | ',' | ')' | ']' | ';' | ':' | '<' | '(');
            if glued_after || glued_before {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The error for an attribute on something other than a function, under the item's keyword
/// and name.
pub(crate) fn not_a_fn(item: &TokenStream, attr: &str) -> TokenStream {
    use syn::Item;
    let msg = format!(
        "`#[{attr}]` goes on an `async fn`, like `#[{attr}] async fn name(..) -> Result<..>`"
    );
    let head = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Struct(i)) => Some((i.struct_token.span, i.ident.span())),
        Ok(Item::Enum(i)) => Some((i.enum_token.span, i.ident.span())),
        Ok(Item::Const(i)) => Some((i.const_token.span, i.ident.span())),
        Ok(Item::Static(i)) => Some((i.static_token.span, i.ident.span())),
        Ok(Item::Trait(i)) => Some((i.trait_token.span, i.ident.span())),
        Ok(Item::Mod(i)) => Some((i.mod_token.span, i.ident.span())),
        Ok(Item::Type(i)) => Some((i.type_token.span, i.ident.span())),
        _ => None,
    };
    let err = match head {
        // An error whose first and last tokens carry these spans covers `struct Name`.
        Some((keyword, name)) => {
            let keyword = Ident::new("item", keyword);
            let name = Ident::new("name", name);
            syn::Error::new_spanned(quote!(#keyword #name), msg)
        }
        None => syn::Error::new(Span::call_site(), msg),
    };
    err.into_compile_error()
}

/// One `key = value` (or bare `key`) of an attribute.
pub(crate) struct Opt {
    pub(crate) key: Ident,
    pub(crate) value: Option<OptValue>,
}

pub(crate) enum OptValue {
    Str(LitStr),
    /// A number, with its `-` if it has one (kept apart so an error covers both).
    Int(Option<Token![-]>, LitInt),
    Paths(Vec<Path>),
}

impl Parse for Opt {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        if !input.peek(Token![=]) {
            return Ok(Opt { key, value: None });
        }
        input.parse::<Token![=]>()?;
        let value = if input.peek(LitStr) {
            OptValue::Str(input.parse()?)
        } else if input.peek(Token![-]) && input.peek2(LitInt) {
            OptValue::Int(Some(input.parse()?), input.parse()?)
        } else if input.peek(LitInt) {
            OptValue::Int(None, input.parse()?)
        } else if input.peek(syn::token::Bracket) {
            let content;
            let bracket = bracketed!(content in input);
            let list = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
            let _ = bracket;
            OptValue::Paths(list.into_iter().collect())
        } else {
            OptValue::Paths(vec![input.parse()?])
        };
        Ok(Opt {
            key,
            value: Some(value),
        })
    }
}

/// Parses `a = 1, b = "x"` and reports unknown and duplicate keys.
pub(crate) fn parse_opts(
    args: TokenStream,
    attr: &str,
    known: &[&str],
    errors: &mut Errors,
) -> Vec<Opt> {
    let parsed = Punctuated::<Opt, Token![,]>::parse_terminated.parse2(args);
    let opts = match parsed {
        Ok(p) => p.into_iter().collect::<Vec<_>>(),
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let mut seen: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for opt in opts {
        let key = opt.key.to_string();
        if !known.contains(&key.as_str()) {
            let list = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let msg = match closest(&key, known) {
                Some(near) => format!(
                    "unknown `#[{attr}]` option `{key}`: did you mean `{near}`? (the options are {list})"
                ),
                None => format!("unknown `#[{attr}]` option `{key}`; expected one of {list}"),
            };
            errors.at(opt.key.span(), msg);
        } else if seen.contains(&key) {
            errors.at(
                opt.key.span(),
                format!("duplicate `#[{attr}]` option `{key}`; give it once"),
            );
        } else {
            seen.push(key);
            kept.push(opt);
        }
    }
    kept
}

/// The known option a mistyped one most likely meant: at most two edits away, or sharing its
/// first four letters (`retry` → `retries`).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (prev + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    let shared_prefix = |k: &str| {
        key.chars()
            .zip(k.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= 2 || shared_prefix(k) >= 4)
        .min()
        .map(|(_, k)| k)
}

impl Opt {
    /// A value of the wrong kind: the error sits under the value, or under the key if there
    /// is none.
    fn expected(&self, what: &str, errors: &mut Errors) {
        let msg = format!("option `{}` expects {what}", self.key);
        match &self.value {
            Some(OptValue::Str(s)) => errors.under(s, msg),
            Some(OptValue::Int(minus, i)) => errors.under(quote!(#minus #i), msg),
            Some(OptValue::Paths(p)) => errors.under(quote!(#(#p),*), msg),
            None => errors.at(self.key.span(), msg),
        }
    }

    pub(crate) fn str(&self, example: &str, errors: &mut Errors) -> Option<LitStr> {
        match &self.value {
            Some(OptValue::Str(s)) => Some(s.clone()),
            _ => {
                self.expected(
                    &format!("a string, like `{} = {example}`", self.key),
                    errors,
                );
                None
            }
        }
    }

    pub(crate) fn u32(&self, errors: &mut Errors) -> Option<u32> {
        match &self.value {
            Some(OptValue::Int(minus, i)) => match i.base10_parse::<u32>() {
                Ok(n) if minus.is_none() || n == 0 => Some(n),
                _ => {
                    let why = if minus.is_some() || i.base10_digits().starts_with('-') {
                        "cannot be negative".to_string()
                    } else if !i.suffix().is_empty() {
                        format!("takes a plain number, without the `{}` suffix", i.suffix())
                    } else {
                        format!("is at most {}", u32::MAX)
                    };
                    errors.under(
                        quote!(#minus #i),
                        format!(
                            "option `{}` {why}: write a whole number, 0 or more, like `{} = 3`",
                            self.key, self.key
                        ),
                    );
                    None
                }
            },
            _ => {
                self.expected(&format!("a whole number, like `{} = 3`", self.key), errors);
                None
            }
        }
    }

    pub(crate) fn paths(&self, errors: &mut Errors) -> Vec<Path> {
        match &self.value {
            Some(OptValue::Paths(p)) => p.clone(),
            _ => {
                self.expected(
                    &format!("resource names, like `{} = [Db, Cache]`", self.key),
                    errors,
                );
                Vec::new()
            }
        }
    }

    pub(crate) fn duration_millis(&self, errors: &mut Errors) -> Option<u64> {
        let lit = self.str("\"30s\"", errors)?;
        match parse_duration(&lit.value()) {
            Ok(ms) => Some(ms),
            Err(why) => {
                errors.at(
                    lit.span(),
                    format!(
                        "invalid duration \"{}\": {why}; write numbers with units `ms`, `s`, `m`, `h` or `d`, like \"90s\", \"1m30s\" or \"1.5h\"",
                        lit.value()
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn crate_path(&self, errors: &mut Errors) -> Option<Path> {
        let lit = self.str("\"::minder\"", errors)?;
        match lit.parse::<Path>() {
            Ok(p) => Some(p),
            Err(_) => {
                errors.at(
                    lit.span(),
                    "expected a path to the minder crate, like \"::minder\"",
                );
                None
            }
        }
    }
}

/// `c` as a message shows it: `` `/` ``, "a space", `` `\t` ``.
fn show_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_whitespace() || c.is_control() => format!("`{}`", c.escape_debug()),
        c => format!("`{c}`"),
    }
}

/// Why `value` cannot be a task's name, which is a segment of every step key of the task
/// (`scope/name#n`), or `None` when it can.
pub(crate) fn bad_task_name(value: &str) -> Option<String> {
    const RULE: &str = "use letters, digits, `_`, `.`, `:` and `-`, like \"fetch-page\"";
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if value.is_empty() {
        return Some(format!(
            "a task name cannot be empty: it is the `name` of the task's step keys (`scope/name#n`); {RULE}"
        ));
    }
    let c = value.chars().find(|c| !allowed(*c))?;
    let why = match c {
        '/' => "`/` separates the scopes of a step key (`scope/name#n`), so two different steps could get the same key".to_string(),
        '#' => "`#` separates a step key's name from its count (`scope/name#n`), so two different steps could get the same key".to_string(),
        _ => "step keys (`scope/name#n`) are shown by `minder events` and compared on replay, so they are kept to characters that read the same everywhere".to_string(),
    };
    Some(format!(
        "a task name cannot contain {}: {why}; {RULE}",
        show_char(c)
    ))
}

/// Why `value` cannot be a process's name, which is one word on the command line
/// (`minder run <name>`) and is journaled with every run, or `None` when it can.
pub(crate) fn bad_process_name(value: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let suggestion: String = value
        .split(|c: char| !allowed(c))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let like = if suggestion.is_empty() {
        "batch-files".to_string()
    } else {
        suggestion
    };
    let what = if value.is_empty() {
        "be empty".to_string()
    } else {
        format!(
            "contain {}",
            show_char(value.chars().find(|c| !allowed(*c))?)
        )
    };
    Some(format!(
        "a process name cannot {what}: it is one word on the command line (`run <process>`); \
         use letters, digits, `-` and `_`, like \"{like}\""
    ))
}

/// `"1m30s"` → 90 000: humantime's grammar (the CLI's `--suspend-sleeps-over` reads the
/// same), in whole milliseconds, longer than zero. Units `ms`, `s`, `m`, `h`, `d`, `w` (and
/// their long names: `sec`, `min`, `hours`, ...); parts may be separated by spaces and carry
/// a fraction (`"1.5h"`).
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text).map_err(|e| explain_duration_error(text, e))?;
    if d.is_zero() {
        return Err("it must be longer than zero".into());
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("minder counts durations in whole milliseconds".into());
    }
    u64::try_from(d.as_millis()).map_err(|_| "the duration is too large".into())
}

/// humantime's error in words that name the user's text.
fn explain_duration_error(text: &str, e: humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let from = |at: usize| text.get(at..).unwrap_or("").trim();
    match e {
        E::Empty => "it is empty".into(),
        E::NumberExpected(at) => format!("expected a number at `{}`", from(at)),
        E::InvalidCharacter(at) => format!("unexpected character at `{}`", from(at)),
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => format!("`{value}` has no unit"),
        E::UnknownUnit { unit, .. } => format!("unknown unit `{unit}`"),
        E::NumberOverflow => "the duration is too large (or finer than a nanosecond)".into(),
    }
}

/// `tokens` (a path, say) with every token at `span`.
pub(crate) fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut t| {
            t.set_span(span);
            t
        })
        .collect()
}

/// The crate path generated code uses: `::minder` unless `crate = "..."` says otherwise.
pub(crate) fn default_crate() -> TokenStream {
    quote!(::minder)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn source_text_reads_like_source() {
        let ty: syn::Type = syn::parse_quote!(&'a [Vec<(String, u32)>]);
        assert_eq!(super::source_text(&ty), "&'a [Vec<(String, u32)>]");
        let ty: syn::Type = syn::parse_quote!(&mut std::path::Path);
        assert_eq!(super::source_text(&ty), "&mut std::path::Path");
        let ty: syn::Type = syn::parse_quote!([u8; 4]);
        assert_eq!(super::source_text(&ty), "[u8; 4]");
    }

    #[test]
    fn closest_option() {
        let known = ["retries", "timeout", "backoff", "reads", "writes"];
        assert_eq!(super::closest("retry", &known), Some("retries"));
        assert_eq!(super::closest("timout", &known), Some("timeout"));
        assert_eq!(super::closest("write", &known), Some("writes"));
        assert_eq!(super::closest("color", &known), None);
    }

    #[test]
    fn names() {
        use super::{bad_process_name, bad_task_name};
        assert_eq!(bad_task_name("fetch-page"), None);
        assert_eq!(bad_task_name("billing.charge:v2"), None);
        assert!(bad_task_name("").unwrap().contains("cannot be empty"));
        assert!(bad_task_name("a/b")
            .unwrap()
            .starts_with("a task name cannot contain `/`"));
        assert!(bad_task_name("a#1")
            .unwrap()
            .starts_with("a task name cannot contain `#`"));
        assert!(bad_task_name("a b")
            .unwrap()
            .contains("cannot contain a space"));
        assert!(bad_task_name("a\tb").unwrap().contains("`\\t`"));
        assert!(bad_task_name("café").unwrap().contains("`é`"));
        assert_eq!(bad_process_name("batch_files-v2"), None);
        assert!(bad_process_name("a.b").unwrap().contains("`.`"));
        assert!(bad_process_name("nightly build!")
            .unwrap()
            .ends_with("like \"nightly-build\""));
        assert!(bad_process_name("").unwrap().contains("cannot be empty"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(60_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1m 30s"), Ok(90_000));
        assert_eq!(
            parse_duration("10 parsecs"),
            Err("unknown unit `parsecs`".into())
        );
        assert_eq!(parse_duration("10"), Err("`10` has no unit".into()));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn durations_in_humantime_grammar() {
        // Forms the hand-written parser accepted keep their values.
        assert_eq!(parse_duration(" 10 s "), Ok(10_000));
        assert_eq!(parse_duration("1h 1m 1s 1ms"), Ok(3_661_001));
        // New: longer units, long names, fractions.
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("2 minutes"), Ok(120_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000));
        assert_eq!(
            parse_duration("1500us"),
            Err("minder counts durations in whole milliseconds".into())
        );
        assert_eq!(
            parse_duration("0ms"),
            Err("it must be longer than zero".into())
        );
        assert_eq!(parse_duration(""), Err("it is empty".into()));
        assert_eq!(parse_duration("s"), Err("expected a number at `s`".into()));
        assert_eq!(
            parse_duration("10s, 5s"),
            Err("unexpected character at `, 5s`".into())
        );
        assert!(parse_duration("99999999999999999999h")
            .unwrap_err()
            .starts_with("the duration is too large"));
    }
}
