//! `#[process]`: parse the options and the signature, check the body (determinism, dependent
//! parallel branches), and expand into the user's function, a process type of the same name and
//! its static graph.

mod check;
mod graph;

use crate::options::{default_crate, parse_opts, Errors};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

struct Signature {
    ctx_name: Option<String>,
    input: Type,
    ret: Type,
}

fn check_signature(func: &ItemFn, errors: &mut Errors) -> Option<Signature> {
    let sig = &func.sig;
    let expected = "write `async fn name(ctx: &Ctx, input: Input) -> Result<Output, ProcessError>`";
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            format!("a `#[process]` must be an `async fn`; {expected}"),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(
            sig.generics.span(),
            "a `#[process]` cannot be generic: its input and output are journaled, so they need concrete types",
        );
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            errors.at(
                sig.ident.span(),
                format!("a `#[process]` must return `Result<Output, Error>`; {expected}"),
            );
            None
        }
    };
    let args: Vec<&FnArg> = sig.inputs.iter().collect();
    if args.len() != 2 {
        let span = if args.is_empty() {
            sig.ident.span()
        } else {
            sig.inputs.span()
        };
        errors.at(
            span,
            format!(
                "a `#[process]` takes exactly two parameters, the context and one input, found {}; {expected} (several inputs go in one struct)",
                args.len()
            ),
        );
        return None;
    }
    let mut ctx_name = None;
    match args[0] {
        FnArg::Receiver(r) => {
            errors.at(r.span(), format!("a `#[process]` cannot take `self`; {expected}"));
        }
        FnArg::Typed(pt) => {
            let is_ctx_ref = matches!(&*pt.ty, Type::Reference(r)
                if r.mutability.is_none()
                && matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ctx")));
            if !is_ctx_ref {
                errors.at(
                    pt.ty.span(),
                    format!(
                        "the first parameter of a `#[process]` must be `&Ctx`, found `{}`; {expected}",
                        pt.ty.to_token_stream()
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
            errors.at(r.span(), format!("a `#[process]` cannot take `self`; {expected}"));
            None
        }
        FnArg::Typed(pt) => {
            if let Type::Reference(r) = &*pt.ty {
                errors.at(
                    r.span(),
                    "a process input is journaled and must be owned: take it by value",
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
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(Span::call_site(), "`#[process]` goes on an `async fn`")
                .into_compile_error();
            return quote!(#e #item);
        }
    };
    let mut errors = Errors::default();
    let mut krate = default_crate();
    let mut name = func.sig.ident.to_string().replace('_', "-");
    for opt in parse_opts(args, "process", &["name", "crate"], &mut errors) {
        match opt.key.to_string().as_str() {
            "name" => {
                if let Some(lit) = opt.str("\"batch-files\"", &mut errors) {
                    let value = lit.value();
                    let ok = !value.is_empty()
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if ok {
                        name = value;
                    } else {
                        errors.at(
                            lit.span(),
                            "a process name is used on the command line: use letters, digits, `-` and `_`",
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
    let sig = check_signature(&func, &mut errors);
    let ctx_name = sig.as_ref().and_then(|s| s.ctx_name.clone());
    check::body(&func.block, &mut errors);

    // The user's own lints stay; an un-awaited task future becomes an error.
    func.attrs.push(syn::parse_quote!(#[deny(unused_must_use)]));

    let sig = match sig {
        Some(sig) if errors.is_empty() => sig,
        _ => {
            let errs = errors.into_tokens();
            return quote!(#errs #func);
        }
    };
    let nodes = graph::nodes(&func.block, ctx_name.as_deref(), &krate);
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let input = &sig.input;
    let ret = &sig.ret;
    let doc = format!("The process type of [`{ident}()`]: run it with `Runner::run::<{ident}>(input)`.");
    let input_assert =
        quote_spanned!(input.span()=> #krate::__private::assert_journaled::<#input>(););
    let ret_assert =
        quote_spanned!(ret.span()=> #krate::__private::assert_process_return::<#ret>(););
    quote! {
        #func

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {
            _private: (),
        }

        impl #krate::__private::Process for #ident {
            const NAME: &'static str = #name;
            type Input = #input;
            type Output = <#ret as #krate::__private::ProcessReturn>::Ok;
            type Error = <#ret as #krate::__private::ProcessReturn>::Err;
            fn graph() -> &'static #krate::__private::Graph {
                static GRAPH: #krate::__private::Graph = #krate::__private::Graph {
                    process: #name,
                    nodes: &[#(#nodes),*],
                };
                &GRAPH
            }
            fn run(
                ctx: &#krate::__private::Ctx,
                input: Self::Input,
            ) -> #krate::__private::BoxFuture<'_, ::core::result::Result<Self::Output, Self::Error>> {
                ::std::boxed::Box::pin(#ident(ctx, input))
            }
        }

        const _: () = {
            #[allow(dead_code)]
            fn assert_types() {
                #input_assert
                #ret_assert
            }
        };
    }
}
