//! `#[process]`: parse the options and the signature, check the body (determinism, dependent
//! parallel branches), and expand into the user's function, a process type of the same name and
//! its static graph.

mod access;
pub(crate) use access::CHECKED;
mod check;
mod graph;

use crate::options::{
    bad_process_name, default_crate, not_a_fn, parse_opts, respan, source_text, Errors,
};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

struct Signature {
    ctx_name: Option<String>,
    input: Type,
    ret: Type,
}

/// Return types that are certainly not a `Result`: reported here, once, rather than by the
/// trait bounds of the generated `Process` impl. Anything else (a `Result` alias, say) is left
/// to the `ProcessReturn` bound, which is spanned at the user's type too.
fn certainly_not_result(ty: &Type) -> bool {
    const NOT_RESULT: &[&str] = &[
        "String", "Vec", "Option", "Box", "HashMap", "BTreeMap", "HashSet", "BTreeSet", "bool",
        "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
        "isize", "f32", "f64", "str",
    ];
    match ty {
        Type::Path(p) => {
            p.qself.is_none()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| NOT_RESULT.contains(&s.ident.to_string().as_str()))
        }
        Type::Paren(p) => certainly_not_result(&p.elem),
        Type::Group(_) | Type::Macro(_) | Type::Verbatim(_) | Type::Infer(_) => false,
        _ => true,
    }
}

fn is_ctx_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r)
        if r.mutability.is_none()
        && matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ctx")))
}

fn mentions_ctx(arg: &FnArg) -> bool {
    let FnArg::Typed(pt) = arg else {
        return false;
    };
    let ty = match &*pt.ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ctx"))
}

fn check_signature(func: &ItemFn, errors: &mut Errors) -> Option<Signature> {
    let sig = &func.sig;
    let expected = "write `async fn name(ctx: &Ctx, input: Input) -> Result<Output, ProcessError>`";
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            "a `#[process]` must be an `async fn`: write `async fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.under(
            &sig.generics,
            "a `#[process]` cannot be generic: its input and output are journaled, so they need concrete types",
        );
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) if certainly_not_result(ty) => {
            errors.under(
                ty,
                format!(
                    "a `#[process]` must return `Result<Output, Error>`, found `{}`: write `-> Result<{}, ProcessError>` and return `Ok(..)`",
                    source_text(ty),
                    source_text(ty)
                ),
            );
            None
        }
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            errors.at(
                sig.ident.span(),
                "a `#[process]` must return `Result<Output, Error>`: add `-> Result<Output, ProcessError>`",
            );
            None
        }
    };
    let args: Vec<&FnArg> = sig.inputs.iter().collect();
    match args.as_slice() {
        [] => {
            errors.at(
                sig.paren_token.span.join(),
                format!("a `#[process]` takes the context and one input; {expected}"),
            );
            return None;
        }
        [only] if mentions_ctx(only) => {
            errors.at(
                sig.paren_token.span.join(),
                format!("a `#[process]` takes one input after the context (`()` if it needs none); {expected}"),
            );
            return None;
        }
        [only] => {
            errors.under(
                only,
                format!(
                    "a `#[process]` takes the context first: write `ctx: &Ctx, {}`",
                    source_text(only)
                ),
            );
            return None;
        }
        [_, _] => {}
        [_, first, rest @ ..] => {
            let names: Vec<String> = std::iter::once(*first)
                .chain(rest.iter().copied())
                .map(|a| match a {
                    FnArg::Typed(pt) => format!("`{}`", source_text(&pt.pat)),
                    FnArg::Receiver(_) => "`self`".into(),
                })
                .collect();
            errors.under(
                quote!(#(#rest),*),
                format!(
                    "a `#[process]` takes one input after the context, found {}: put {} in one `#[data]` struct and take that",
                    names.len(),
                    names.join(" and ")
                ),
            );
            return None;
        }
    }
    let mut ctx_name = None;
    match args[0] {
        FnArg::Receiver(r) => {
            errors.under(r, format!("a `#[process]` cannot take `self`; {expected}"));
        }
        FnArg::Typed(pt) => {
            if !is_ctx_ref(&pt.ty) {
                errors.under(
                    &pt.ty,
                    format!(
                        "the first parameter of a `#[process]` must be `&Ctx`, found `{}`: write `{}: &Ctx`",
                        source_text(&pt.ty),
                        source_text(&pt.pat)
                    ),
                );
            }
            if let Pat::Ident(p) = &*pt.pat {
                ctx_name = Some(p.ident.to_string());
            }
        }
    }
    let input = match args[1] {
        FnArg::Receiver(r) => {
            errors.under(r, format!("a `#[process]` cannot take `self`; {expected}"));
            None
        }
        FnArg::Typed(pt) => {
            if let Type::Reference(r) = &*pt.ty {
                errors.under(
                    r,
                    format!(
                        "a process input is journaled and must be owned, but `{}` borrows: take `{}` by value",
                        source_text(r),
                        source_text(&r.elem)
                    ),
                );
                None
            } else {
                Some((*pt.ty).clone())
            }
        }
    };
    Some(Signature {
        ctx_name,
        input: input?,
        ret: ret?,
    })
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let _parsed = crate::parallel::ParsedMacros::start();
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = not_a_fn(&item, "process");
            return quote!(#e #item);
        }
    };
    let mut errors = Errors::default();
    let mut krate = default_crate();
    let mut name = func.sig.ident.unraw().to_string().replace('_', "-");
    let mut queue: Option<String> = None;
    for opt in parse_opts(args, "process", &["name", "queue", "crate"], &mut errors) {
        match opt.key.to_string().as_str() {
            "name" => {
                if let Some(lit) = opt.str("\"batch-files\"", &mut errors) {
                    let value = lit.value();
                    match bad_process_name(&value) {
                        None => name = value,
                        Some(why) => errors.at(lit.span(), why),
                    }
                }
            }
            "queue" => {
                if let Some(lit) = opt.str("\"deploys\"", &mut errors) {
                    let value = lit.value();
                    let ok = !value.is_empty()
                        && value.len() <= 64
                        && value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if ok {
                        queue = Some(value);
                    } else {
                        errors.at(
                            lit.span(),
                            "a queue name is one word of at most 64 letters, digits, `-` and \
                             `_` (workers name it in `--queues`), like \"deploys\"",
                        );
                    }
                }
            }
            "crate" => {
                if let Some(p) = opt.crate_path(&mut errors) {
                    krate = p.into_token_stream();
                }
            }
            _ => unreachable!("parse_opts keeps known options only"),
        }
    }
    let queue_const = queue.map(|q| quote!(const QUEUE: &'static str = #q;));
    let sig = check_signature(&func, &mut errors);
    let ctx_name = sig.as_ref().and_then(|s| s.ctx_name.clone());
    let probes = check::body(&func, &mut errors);

    // The function is emitted as the user wrote it (its own tokens, not a re-print of the
    // syntax tree) less its `#[deterministic]` marks; the user's own lints stay, and an
    // un-awaited task future becomes an error.
    let clean = errors.is_empty() && sig.is_some();
    let item = check::strip_marks(access::mark_checked(item, &probes, clean.then_some(&krate)));

    let sig = match sig {
        Some(sig) if errors.is_empty() => sig,
        _ => {
            let errs = errors.into_tokens();
            return quote!(#errs #[deny(unused_must_use)] #item);
        }
    };
    let user_fn = quote!(#[deny(unused_must_use)] #item);
    let nodes = graph::nodes(&func.block, ctx_name.as_deref(), &krate);
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let input = &sig.input;
    let ret = &sig.ret;
    let doc =
        format!("The process type of [`{ident}()`]: run it with `Runner::run::<{ident}>(input)`.");
    // `Process` bounds `Input: Journaled`; rustc reports that in terms of serde, so the assertion
    // says it in minder's terms under the user's type.
    let input_assert =
        quote_spanned!(input.span()=> #krate::__private::assert_journaled::<#input>(););
    // The impl is checked against `ProcessReturn` in several places (the projections, the
    // bounds on `Output` and `Error`, `run`); it is spanned at the return type so that those
    // errors sit there and not on the attribute.
    let k = respan(&krate, ret.span());
    let process_impl = quote_spanned! {ret.span()=>
        impl #k::__private::Process for #ident {
            const NAME: &'static str = #name;
            #queue_const
            type Input = #input;
            type Output = <#ret as #k::__private::ProcessReturn>::Ok;
            type Error = <#ret as #k::__private::ProcessReturn>::Err;
            fn graph() -> &'static #k::__private::Graph {
                // A constant expression: promoted to a `'static`, no item of its own.
                &#k::__private::Graph {
                    process: #name,
                    file: ::core::file!(),
                    nodes: &[#(#nodes),*],
                }
            }
            fn run(
                ctx: &#k::__private::Ctx,
                input: Self::Input,
            ) -> #k::__private::BoxFuture<'_, ::core::result::Result<Self::Output, Self::Error>> {
                #input_assert
                ::std::boxed::Box::pin(#ident(ctx, input))
            }
        }
    };
    quote! {
        #user_fn

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        #process_impl
    }
}
