//! `parallel!`: parse `($crate) [settle:] branch, ...`, then expand into branch scopes, a
//! compile-time check of declared resource access, and a join that is fail-fast or settling.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{parenthesized, Expr, Token};

pub(crate) struct ParallelInput {
    pub(crate) krate: TokenStream,
    pub(crate) settle: bool,
    pub(crate) branches: Vec<Expr>,
}

/// The branches of a `parallel!` invocation as written by the user (no `$crate` prefix).
pub(crate) struct Branches {
    pub(crate) settle: bool,
    pub(crate) branches: Vec<Expr>,
}

impl Parse for Branches {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let settle = if input.peek(syn::Ident) && input.peek2(Token![:]) && !input.peek2(Token![::])
        {
            let mode: syn::Ident = input.parse()?;
            if mode != "settle" {
                return Err(syn::Error::new(
                    mode.span(),
                    format!("unknown `parallel!` mode `{mode}`; the only mode is `settle:` (every branch runs to its end)"),
                ));
            }
            input.parse::<Token![:]>()?;
            true
        } else {
            false
        };
        let branches: Vec<Expr> = Punctuated::<Expr, Token![,]>::parse_terminated(input)?
            .into_iter()
            .collect();
        Ok(Branches { settle, branches })
    }
}

impl Parse for ParallelInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        parenthesized!(content in input);
        let krate: TokenStream = content.parse()?;
        let Branches { settle, branches } = input.parse()?;
        if branches.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "`parallel!` needs at least one branch, like `parallel!(lint(files.clone()), test(files))`",
            ));
        }
        Ok(ParallelInput {
            krate,
            settle,
            branches,
        })
    }
}

/// A short name for a branch: the called function, `seq` for a block, `par` for a nested block.
pub(crate) fn branch_label(expr: &Expr) -> String {
    match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_else(|| "call".into()),
            _ => "call".into(),
        },
        Expr::Async(_) | Expr::Block(_) => "seq".into(),
        Expr::Macro(m) if m.mac.path.is_ident("parallel") => "par".into(),
        Expr::Paren(p) => branch_label(&p.expr),
        Expr::MethodCall(m) => m.method.to_string(),
        _ => "expr".into(),
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let parsed: ParallelInput = match syn::parse2(input) {
        Ok(p) => p,
        Err(e) => return e.into_compile_error(),
    };
    let krate = &parsed.krate;
    let n = parsed.branches.len();
    let label = parsed
        .branches
        .iter()
        .map(branch_label)
        .collect::<Vec<_>>()
        .join("+");
    let mixed = Span::mixed_site();
    let par = quote_spanned!(mixed=> __par);
    let values: Vec<_> = (0..n).map(|i| format_ident!("__v{}", i, span = mixed)).collect();
    let futs: Vec<_> = (0..n).map(|i| format_ident!("__f{}", i, span = mixed)).collect();
    let slots: Vec<_> = (0..n).map(|i| format_ident!("__r{}", i, span = mixed)).collect();
    let cx = quote_spanned!(mixed=> __cx);
    let pending = quote_spanned!(mixed=> __pending);

    let creates = parsed.branches.iter().enumerate().map(|(i, expr)| {
        let v = &values[i];
        // A nested macro (`parallel!`) awaits, so it becomes an async block; any other
        // expression is evaluated as it is, which keeps a task call's type for the access check.
        let value = match expr {
            Expr::Macro(_) => quote_spanned!(expr.span()=> async { #expr }),
            _ => quote_spanned!(expr.span()=> #expr),
        };
        quote_spanned! {expr.span()=>
            let #v = #par.create(#i, || #value);
        }
    });
    let pins = (0..n).map(|i| {
        let (v, f) = (&values[i], &futs[i]);
        quote_spanned! {mixed=>
            let mut #f = #krate::__private::pin!(#par.poll_in(#i, #krate::__private::IntoFuture::into_future(#v)));
        }
    });

    let access_check = access_check(krate, &parsed.branches, &values);

    let polls = parsed.branches.iter().enumerate().map(|(i, expr)| {
        let f = &futs[i];
        let r = &slots[i];
        let on_ready = if parsed.settle {
            quote_spanned!(expr.span()=> #krate::__private::Poll::Ready(__out) => #r = ::core::option::Option::Some(__out),)
        } else {
            quote_spanned! {expr.span()=>
                #krate::__private::Poll::Ready(::core::result::Result::Ok(__out)) => #r = ::core::option::Option::Some(__out),
                #krate::__private::Poll::Ready(::core::result::Result::Err(__err)) => {
                    return #krate::__private::Poll::Ready(::core::result::Result::Err(__err));
                }
            }
        };
        quote_spanned! {mixed=>
            if #r.is_none() {
                match #krate::__private::Future::poll(#f.as_mut(), #cx) {
                    #on_ready
                    #krate::__private::Poll::Pending => #pending = true,
                }
            }
        }
    });

    let takes = slots.iter().map(|r| {
        quote_spanned!(mixed=> #r.take().expect("every branch finished"))
    });
    let done = if parsed.settle {
        quote_spanned!(mixed=> #krate::__private::Poll::Ready((#(#takes,)*)))
    } else {
        quote_spanned!(mixed=> #krate::__private::Poll::Ready(::core::result::Result::Ok((#(#takes,)*))))
    };

    quote_spanned! {mixed=>
        {
            let #par = #krate::__private::Parallel::enter(#label, #n);
            #(#creates)*
            #access_check
            #(#pins)*
            #(let mut #slots = ::core::option::Option::None;)*
            #krate::__private::poll_fn(|#cx| {
                let mut #pending = false;
                #(#polls)*
                if #pending {
                    return #krate::__private::Poll::Pending;
                }
                #done
            })
            .await
        }
    }
}

/// For every pair of branches, a constant that fails to evaluate when their tasks declare
/// conflicting access to one resource. It is evaluated when the process is compiled to code
/// (`cargo build`, `cargo test`), and the error sits under the later branch of the pair.
fn access_check(krate: &TokenStream, branches: &[Expr], values: &[syn::Ident]) -> TokenStream {
    let n = branches.len();
    if n < 2 {
        return TokenStream::new();
    }
    let mixed = Span::mixed_site();
    let params: Vec<_> = (0..n).map(|i| format_ident!("A{}", i, span = mixed)).collect();
    let mut consts = Vec::new();
    for j in 1..n {
        for i in 0..j {
            let (a, b) = (&params[i], &params[j]);
            let span = branches[j].span();
            consts.push(quote_spanned! {span=>
                const {
                    if let ::core::option::Option::Some(__why) =
                        #krate::__private::conflict(<#a as #krate::__private::HasAccess>::ACCESS, <#b as #krate::__private::HasAccess>::ACCESS)
                    {
                        ::core::panic!("{}", __why)
                    }
                };
            });
        }
    }
    let probes = values.iter().map(|v| quote_spanned!(mixed=> (&#v).__minder_probe()));
    quote_spanned! {mixed=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{ProbeOther as _, ProbeTask as _};
            fn __minder_access_check<#(#params: #krate::__private::HasAccess),*>(
                #(_: #krate::__private::PhantomData<#params>),*
            ) {
                #(#consts)*
            }
            __minder_access_check(#(#probes),*);
        }
    }
}
