//! `parallel!`: parse `($crate) [settle:] branch, ...`, then expand into branch scopes, a
//! compile-time check of declared resource access, and a join that is fail-fast or settling.

use crate::options::respan;
use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
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

/// Blocks of up to this many branches call `try_joinN` / `settleN` of the runtime.
const JOINED: usize = 12;

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
    let values: Vec<_> = (0..n)
        .map(|i| format_ident!("__v{}", i, span = mixed))
        .collect();

    let creates = parsed.branches.iter().enumerate().map(|(i, expr)| {
        let v = &values[i];
        // A nested macro (`parallel!`) awaits, so it becomes an async block; any other
        // expression is evaluated as it is, which keeps a task call's type for the access check.
        let value = match expr {
            Expr::Macro(_) => quote_spanned!(expr.span()=> async { #expr }),
            _ => quote_spanned!(expr.span()=> #expr),
        };
        let guard = quote_spanned!(mixed=> __minder_branch_guard);
        quote_spanned! {expr.span()=>
            let #v = { let #guard = #par.branch(#i); #value };
        }
    });

    let access_check = access_check(krate, &parsed.branches, &values);

    // Every branch value goes through a generic fn whose bounds say what a branch must be: a
    // future of `Result<T, B>` (fail-fast), or any future (settle). The call and its argument
    // both cover the branch as written, so a branch that breaks a bound is reported once, under
    // that branch; the fn returns a boxed future of a plain type, so the polling code below
    // does not report the branch again. Fail-fast blocks then check each later branch's error
    // type `B` against the first branch's `E` (`__minder_same`, which also infers `B` = `E` for
    // an `async` block that ends in `Ok(..)`) and get the conversion to apply to its error.
    let p = quote_spanned!(mixed=> #krate::__private);
    let witness = quote_spanned!(mixed=> __e);
    let helpers = if parsed.settle {
        quote_spanned! {mixed=>
            #[allow(unused_imports)]
            use #p::settle_branch as __minder_branch;
        }
    } else {
        quote_spanned! {mixed=>
            #[allow(unused_imports)]
            use #p::{
                first_branch as __minder_first, later_branch as __minder_branch,
                same_error as __minder_same,
            };
            let #witness = ::core::option::Option::None;
        }
    };
    let boxed: Vec<_> = (0..n)
        .map(|i| format_ident!("__b{}", i, span = mixed))
        .collect();
    let convs: Vec<_> = (0..n)
        .map(|i| format_ident!("__c{}", i, span = mixed))
        .collect();
    let futs: Vec<_> = (0..n)
        .map(|i| format_ident!("__f{}", i, span = mixed))
        .collect();
    let slots: Vec<_> = (0..n)
        .map(|i| format_ident!("__r{}", i, span = mixed))
        .collect();
    let pins = parsed.branches.iter().enumerate().map(|(i, expr)| {
        let (v, b, c, f) = (&values[i], &boxed[i], &convs[i], &futs[i]);
        let arg = covering(
            expr,
            quote!(::core::convert::identity),
            quote_spanned!(mixed=> #v),
        );
        let (boxing, conv) = if parsed.settle {
            (covering(expr, quote!(__minder_branch), arg), None)
        } else if i == 0 {
            let call = quote_spanned!(mixed=> &#witness, #arg);
            (covering(expr, quote!(__minder_first), call), None)
        } else {
            let witness = covering(
                expr,
                quote!(::core::convert::identity),
                quote_spanned!(mixed=> &#witness),
            );
            let same = covering(
                expr,
                quote!(__minder_same),
                quote_spanned!(mixed=> &#b, #witness),
            );
            (
                covering(expr, quote!(__minder_branch), arg),
                Some(quote_spanned!(mixed=> let #c = #same;)),
            )
        };
        quote_spanned! {mixed=>
            let #b = #boxing;
            #conv
            let mut #f = #p::pin!(#par.poll_in(#i, #b));
        }
    });
    let polls = (0..n).map(|i| {
        let (f, r, c) = (&futs[i], &slots[i], &convs[i]);
        let err = if i == 0 {
            quote_spanned!(mixed=> __err)
        } else {
            quote_spanned!(mixed=> #c(__err))
        };
        let on_ready = if parsed.settle {
            quote_spanned!(mixed=> #p::Poll::Ready(__out) => #r = ::core::option::Option::Some(__out),)
        } else {
            quote_spanned! {mixed=>
                #p::Poll::Ready(::core::result::Result::Ok(__out)) => #r = ::core::option::Option::Some(__out),
                #p::Poll::Ready(::core::result::Result::Err(__err)) => {
                    return #p::Poll::Ready(::core::result::Result::Err(#err));
                }
            }
        };
        quote_spanned! {mixed=>
            if #r.is_none() {
                match #p::Future::poll(#f.as_mut(), __cx) {
                    #on_ready
                    #p::Poll::Pending => __pending = true,
                }
            }
        }
    });
    let takes = slots
        .iter()
        .map(|r| quote_spanned!(mixed=> #r.take().expect("every branch finished")));
    let done = if parsed.settle {
        quote_spanned!(mixed=> (#(#takes,)*))
    } else {
        quote_spanned!(mixed=> ::core::result::Result::Ok((#(#takes,)*)))
    };

    // Up to `JOINED` branches, one call of a join written once in the runtime; larger blocks
    // get their poll loop here.
    if n <= JOINED {
        let joined = (0..n).map(|i| {
            let (b, c) = (&boxed[i], &convs[i]);
            if parsed.settle || i == 0 {
                quote_spanned!(mixed=> #par.poll_in(#i, #b))
            } else {
                quote_spanned!(mixed=> #p::map_err(#par.poll_in(#i, #b), #c))
            }
        });
        let join = if parsed.settle {
            format_ident!("settle{}", n, span = mixed)
        } else {
            format_ident!("try_join{}", n, span = mixed)
        };
        let bindings = parsed.branches.iter().enumerate().map(|(i, expr)| {
            let (v, b, c) = (&values[i], &boxed[i], &convs[i]);
            let arg = covering(
                expr,
                quote!(::core::convert::identity),
                quote_spanned!(mixed=> #v),
            );
            if parsed.settle {
                let boxing = covering(expr, quote!(__minder_branch), arg);
                quote_spanned!(mixed=> let #b = #boxing;)
            } else if i == 0 {
                let call = quote_spanned!(mixed=> &#witness, #arg);
                let boxing = covering(expr, quote!(__minder_first), call);
                quote_spanned!(mixed=> let #b = #boxing;)
            } else {
                let boxing = covering(expr, quote!(__minder_branch), arg);
                let witness = covering(
                    expr,
                    quote!(::core::convert::identity),
                    quote_spanned!(mixed=> &#witness),
                );
                let same = covering(
                    expr,
                    quote!(__minder_same),
                    quote_spanned!(mixed=> &#b, #witness),
                );
                quote_spanned!(mixed=> let #b = #boxing; let #c = #same;)
            }
        });
        return quote_spanned! {mixed=>
            {
                let #par = #p::Parallel::enter(#label, #n);
                #(#creates)*
                #access_check
                #helpers
                #(#bindings)*
                #p::#join(#(#joined),*).await
            }
        };
    }

    quote_spanned! {mixed=>
        {
            let #par = #p::Parallel::enter(#label, #n);
            #(#creates)*
            #access_check
            #helpers
            #(#pins)*
            #(let mut #slots = ::core::option::Option::None;)*
            #p::poll_fn(|__cx| {
                let mut __pending = false;
                #(#polls)*
                if __pending {
                    return #p::Poll::Pending;
                }
                #p::Poll::Ready(#done)
            })
            .await
        }
    }
}

/// `callee(inner)` with the span of `expr`'s first token on `callee` and of its last token on
/// the parentheses: rustc reports a problem with the call under the whole of `expr` (on stable
/// a span cannot be joined, but a token range can).
fn covering(expr: &Expr, callee: TokenStream, inner: TokenStream) -> TokenStream {
    let (first, last) = first_last(expr);
    let callee = respan(&callee, first);
    let mut args = Group::new(Delimiter::Parenthesis, inner);
    args.set_span(last);
    quote!(#callee #args)
}

/// The spans of the first and the last token of `expr`.
fn first_last(expr: &Expr) -> (Span, Span) {
    let mut tokens = expr.to_token_stream().into_iter();
    let first = tokens
        .next()
        .map(|t| t.span())
        .unwrap_or_else(Span::call_site);
    let last = tokens.last().map(|t| t.span()).unwrap_or(first);
    (first, last)
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
    let params: Vec<_> = (0..n)
        .map(|i| format_ident!("A{}", i, span = mixed))
        .collect();
    // One constant per branch after the first, checking it against every earlier branch.
    let mut consts = Vec::new();
    for j in 1..n {
        let upto = &params[..=j];
        // `panic!` path and `const` at the branch's first token, their delimiters at its
        // last: the error covers the whole branch.
        let (first, last) = first_last(&branches[j]);
        let mut args = Group::new(Delimiter::Parenthesis, quote_spanned!(first=> "{}", __why));
        args.set_span(last);
        let body = quote_spanned! {first=>
            if let ::core::option::Option::Some(__why) =
                #krate::__private::conflict_with_earlier(&[#(<#upto as #krate::__private::HasAccess>::ACCESS),*])
            {
                ::core::panic! #args
            }
        };
        let mut block = Group::new(Delimiter::Brace, body);
        block.set_span(last);
        let keyword = quote_spanned!(first=> const);
        consts.push(quote!(#keyword #block;));
    }
    let probes = values
        .iter()
        .map(|v| quote_spanned!(mixed=> (&#v).__minder_probe()));
    quote_spanned! {mixed=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{ProbeOther as _, ProbeTask as _};
            #[allow(clippy::too_many_arguments)]
            fn __minder_access_check<#(#params: #krate::__private::HasAccess),*>(
                #(_: #krate::__private::PhantomData<#params>),*
            ) {
                #(#consts)*
            }
            __minder_access_check(#(#probes),*);
        }
    }
}
