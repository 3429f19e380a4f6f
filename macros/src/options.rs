//! Parsing of attribute options shared by `#[task]`, `#[process]` and `#[data]`: keys, duplicate
//! detection, durations, resource lists and the crate path.

use proc_macro2::{Span, TokenStream};
use quote::quote;
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

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn into_tokens(self) -> TokenStream {
        self.0.map(|e| e.into_compile_error()).unwrap_or_default()
    }
}

/// One `key = value` (or bare `key`) of an attribute.
pub(crate) struct Opt {
    pub(crate) key: Ident,
    pub(crate) value: Option<OptValue>,
}

pub(crate) enum OptValue {
    Str(LitStr),
    Int(LitInt),
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
        } else if input.peek(LitInt) {
            OptValue::Int(input.parse()?)
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
            errors.at(
                opt.key.span(),
                format!("unknown `#[{attr}]` option `{key}`; expected one of {list}"),
            );
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

impl Opt {
    fn expected(&self, what: &str, errors: &mut Errors) {
        errors.at(
            self.key.span(),
            format!("option `{}` expects {what}", self.key),
        );
    }

    pub(crate) fn str(&self, example: &str, errors: &mut Errors) -> Option<LitStr> {
        match &self.value {
            Some(OptValue::Str(s)) => Some(s.clone()),
            _ => {
                self.expected(&format!("a string, like `{} = {example}`", self.key), errors);
                None
            }
        }
    }

    pub(crate) fn u32(&self, errors: &mut Errors) -> Option<u32> {
        match &self.value {
            Some(OptValue::Int(i)) => match i.base10_parse::<u32>() {
                Ok(n) => Some(n),
                Err(e) => {
                    errors.push(syn::Error::new(i.span(), e));
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
                        "invalid duration \"{}\": {why}; write a number and a unit (`ms`, `s`, `m`, `h`), like \"90s\" or \"1m30s\"",
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
                errors.at(lit.span(), "expected a path to the minder crate, like \"::minder\"");
                None
            }
        }
    }
}

/// `"1m30s"` → 90 000. Units: `ms`, `s`, `m`, `h`.
pub(crate) fn parse_duration(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty");
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err("a number must come before each unit");
        }
        let n: u64 = text[start..i].parse().map_err(|_| "the number is too large")?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor = match &text[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err("the unit is missing"),
            _ => return Err("unknown unit"),
        };
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or("the duration is too large")?;
    }
    if total == 0 {
        return Err("it must be longer than zero");
    }
    Ok(total)
}

/// The crate path generated code uses: `::minder` unless `crate = "..."` says otherwise.
pub(crate) fn default_crate() -> TokenStream {
    quote!(::minder)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(60_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
