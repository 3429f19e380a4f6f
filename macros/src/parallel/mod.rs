//! `parallel!`: parse `($crate) [settle:] branch, ...`, then expand into branch scopes, a
//! compile-time check of declared resource access, and a join that is fail-fast or settling.

mod tap;

use crate::options::{respan, source_text, Errors};
use proc_macro2::{Delimiter, Group, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{parenthesized, Expr, Macro, Token};

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

/// Macro bodies parsed while a [`ParsedMacros`] lives, by the macro's address (`None`: not
/// comma-separated expressions).
type ParsedBodies = HashMap<usize, Option<Rc<Branches>>>;

thread_local! {
    /// How many [`ParsedMacros`] live, and what was parsed meanwhile.
    static PARSED: RefCell<(usize, ParsedBodies)> = RefCell::default();
}

/// The body of a macro inside a process (`parallel!`, `format!`, `vec!`, ...) as
/// comma-separated expressions, or `None` when it is not. The checks and the graph each walk
/// the body, so while a [`ParsedMacros`] lives each macro is parsed once.
pub(crate) fn macro_args(mac: &Macro) -> Option<Rc<Branches>> {
    let key = mac as *const Macro as usize;
    let (active, hit) = PARSED.with(|c| {
        let c = c.borrow();
        (c.0 > 0, c.1.get(&key).cloned())
    });
    if let Some(hit) = hit {
        return hit;
    }
    let parsed = mac.parse_body::<Branches>().ok().map(Rc::new);
    if active {
        PARSED.with(|c| c.borrow_mut().1.insert(key, parsed.clone()));
    }
    parsed
}

/// While one lives, [`macro_args`] remembers what it parsed. The syntax tree walked must
/// outlive it: when the last one is dropped everything is forgotten, since the addresses are
/// reused afterwards.
pub(crate) struct ParsedMacros(());

impl ParsedMacros {
    pub(crate) fn start() -> ParsedMacros {
        PARSED.with(|c| c.borrow_mut().0 += 1);
        ParsedMacros(())
    }
}

impl Drop for ParsedMacros {
    fn drop(&mut self) {
        PARSED.with(|c| {
            let mut c = c.borrow_mut();
            c.0 -= 1;
            if c.0 == 0 {
                c.1.clear();
            }
        });
    }
}

/// A short name for a branch: the called function, `seq` for a block, `par` for a nested block.
pub(crate) fn branch_label(expr: &Expr) -> String {
    match expr {
        Expr::Call(call) => match &*call.func {
            // A call `parallel!`'s check tapped keeps its label.
            Expr::Path(p)
                if p.path.segments.last().is_some_and(|s| s.ident == tap::TAP)
                    && call.args.len() == 2 =>
            {
                branch_label(&call.args[1])
            }
            Expr::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.unraw().to_string())
                .unwrap_or_else(|| "call".into()),
            _ => "call".into(),
        },
        Expr::Async(_) | Expr::Block(_) => "seq".into(),
        Expr::Macro(m) if m.mac.path.is_ident("parallel") => "par".into(),
        Expr::Paren(p) => branch_label(&p.expr),
        Expr::MethodCall(m) => m.method.unraw().to_string(),
        _ => "expr".into(),
    }
}

/// Blocks of up to this many branches call `try_joinN` / `settleN` of the runtime.
const JOINED: usize = 12;

/// One branch as `expand` needs it: its tokens, its label, whether it is a nested macro, and
/// the spans of its first and last tokens.
struct Branch {
    tokens: TokenStream,
    label: String,
    nested: bool,
    first: Span,
    last: Span,
}

impl Branch {
    fn from_expr(expr: &Expr) -> Branch {
        let (first, last) = first_last(expr);
        Branch {
            tokens: expr.to_token_stream(),
            label: branch_label(expr),
            nested: matches!(expr, Expr::Macro(_)),
            first,
            last,
        }
    }
}

/// The input split at the token level, for the common shapes only: every branch a call of a
/// plain path (`lint(files.clone())`), an `async` block, a block, or a nested `parallel!`.
/// Anything else (`None`) goes through syn, whose expression parser is slow in a proc macro
/// built without optimisation (as dev builds build them) and whose errors are the ones to show.
fn split_simple(input: &TokenStream) -> Option<(TokenStream, bool, Vec<Branch>)> {
    let mut tokens = input.clone().into_iter().peekable();
    let krate = match tokens.next()? {
        TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis => g.stream(),
        _ => return None,
    };
    let all: Vec<TokenTree> = tokens.collect();
    let mut rest = all.as_slice();
    let mut settle = false;
    if let [TokenTree::Ident(mode), TokenTree::Punct(colon), after @ ..] = rest {
        if colon.as_char() == ':' && colon.spacing() == Spacing::Alone {
            if mode != "settle" {
                return None;
            }
            settle = true;
            rest = after;
        }
    }
    // Comma-separated; an empty piece is fine only after a trailing comma.
    let mut parts: Vec<&[TokenTree]> = rest
        .split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
        .collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    let branches = parts
        .into_iter()
        .map(simple_branch)
        .collect::<Option<Vec<_>>>()?;
    Some((krate, settle, branches))
}

fn simple_branch(part: &[TokenTree]) -> Option<Branch> {
    let is = |t: &TokenTree, c: char| matches!(t, TokenTree::Punct(p) if p.as_char() == c);
    let brace =
        |t: &TokenTree| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace);
    let (label, nested) = match part {
        // `async { .. }`, `async move { .. }`, `{ .. }`
        [TokenTree::Ident(a), body] if a == "async" && brace(body) => ("seq".to_string(), false),
        [TokenTree::Ident(a), TokenTree::Ident(m), body]
            if a == "async" && m == "move" && brace(body) =>
        {
            ("seq".to_string(), false)
        }
        [body] if brace(body) => ("seq".to_string(), false),
        // `parallel!(..)`
        [TokenTree::Ident(name), bang, TokenTree::Group(_)]
            if name == "parallel" && is(bang, '!') =>
        {
            ("par".to_string(), true)
        }
        // `a::b::f(..)`: identifiers joined by `::`, then the arguments.
        [path @ .., TokenTree::Group(args)] if args.delimiter() == Delimiter::Parenthesis => {
            let mut rest = path;
            let label = loop {
                let [TokenTree::Ident(id), tail @ ..] = rest else {
                    return None;
                };
                match tail {
                    [] if id == tap::TAP => return None,
                    [] => break id.unraw().to_string(),
                    [TokenTree::Punct(a), TokenTree::Punct(b), more @ ..]
                        if a.as_char() == ':'
                            && a.spacing() == Spacing::Joint
                            && b.as_char() == ':' =>
                    {
                        rest = more;
                    }
                    _ => return None,
                }
            };
            (label, false)
        }
        _ => return None,
    };
    let first = part.first()?.span();
    let last = part.last()?.span();
    Some(Branch {
        tokens: part.iter().cloned().collect(),
        label,
        nested,
        first,
        last,
    })
}

/// `(krate) @__minder_checked { consts } rest` → `(krate) rest` and the constants (see
/// `process::access::CHECKED`); any other input as it is and `None`.
fn take_checked(input: TokenStream) -> (TokenStream, Option<TokenStream>) {
    let tts: Vec<TokenTree> = input.clone().into_iter().collect();
    match tts.as_slice() {
        [krate @ TokenTree::Group(_), TokenTree::Punct(at), TokenTree::Ident(marker), TokenTree::Group(consts), rest @ ..]
            if at.as_char() == '@' && marker == crate::process::CHECKED =>
        {
            let out = std::iter::once(krate.clone()).chain(rest.iter().cloned());
            (out.collect(), Some(consts.stream()))
        }
        _ => (input, None),
    }
}

/// Whether a macro path names `parallel!`.
pub(crate) fn is_parallel_path(path: &syn::Path) -> bool {
    path.segments.last().is_some_and(|s| s.ident == "parallel")
}

/// How the access check's message names a branch's own value: the function it calls, or the
/// expression.
fn value_name(expr: &Expr) -> String {
    match expr {
        Expr::Call(c) => source_text(&c.func).replace(" [", "["),
        Expr::Paren(p) => value_name(&p.expr),
        other => source_text(other).replace(" [", "["),
    }
}

/// The branches with their calls tapped, and the access check of the block (see `tap`).
fn tapped(krate: &TokenStream, branches: Vec<Branch>) -> (Vec<Branch>, TokenStream, TokenStream) {
    let mut tapper = tap::Tapper::new(krate);
    let mut values = Vec::new();
    let mut out = Vec::with_capacity(branches.len());
    for (i, branch) in branches.into_iter().enumerate() {
        let Ok(mut expr) = syn::parse2::<Expr>(branch.tokens.clone()) else {
            out.push(branch);
            continue;
        };
        if !branch.nested {
            let v = format_ident!("__v{}", i, span = Span::mixed_site());
            values.push(tap::Entry {
                branch: i,
                name: value_name(&expr),
                first: branch.first,
                last: branch.last,
                probe: quote_spanned!(Span::mixed_site()=> (&#v).__minder_probe()),
            });
        }
        tapper.branch(i, &mut expr);
        out.push(Branch {
            tokens: expr.to_token_stream(),
            ..branch
        });
    }
    let mixed = Span::mixed_site();
    let slots = tapper.taps.iter().map(|(slot, _)| {
        quote_spanned!(mixed=> let #slot: #krate::__private::Slot<_> = #krate::__private::PhantomData;)
    });
    let slots = quote!(#(#slots)*);
    let mut entries = values;
    entries.extend(tapper.taps.into_iter().map(|(_, e)| e));
    entries.sort_by_key(|e| e.branch);
    let check = tap::check(krate, &entries);
    (out, slots, check)
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let (input, checked) = take_checked(input);
    let (krate, settle, branches) = match split_simple(&input) {
        Some(split) => split,
        None => match syn::parse2::<ParallelInput>(input) {
            Ok(p) => (
                p.krate,
                p.settle,
                p.branches.iter().map(Branch::from_expr).collect(),
            ),
            Err(e) => return e.into_compile_error(),
        },
    };
    // A suspension in a branch is reported beside the expansion, which compiles: the user's
    // code stays in place, so nothing else (an unused import, say) is reported because of it.
    let mut errors = Errors::default();
    for branch in branches.iter().filter(|b| !b.nested) {
        if let Some((tokens, msg)) = suspends(branch.tokens.clone()) {
            errors.under(tokens, msg);
        }
    }
    let expanded = match checked {
        // Inside a `#[process]` whose constant covers this block (`cargo check`): the constant.
        Some(consts) => expand_branches(&krate, settle, &branches, consts, TokenStream::new()),
        None => {
            let (branches, slots, check) = tapped(&krate, branches);
            expand_branches(&krate, settle, &branches, slots, check)
        }
    };
    if errors.is_empty() {
        expanded
    } else {
        let errors = errors.into_tokens();
        quote!({ #errors #expanded })
    }
}

/// The block: `first` (the constants of `#[process]`, or the slots of the taps), the branches
/// created, then `access_check`, then the join.
fn expand_branches(
    krate: &TokenStream,
    settle: bool,
    branches: &[Branch],
    first: TokenStream,
    access_check: TokenStream,
) -> TokenStream {
    let n = branches.len();
    let label = branches
        .iter()
        .map(|b| b.label.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let mixed = Span::mixed_site();
    let par = quote_spanned!(mixed=> __par);
    let values: Vec<_> = (0..n)
        .map(|i| format_ident!("__v{}", i, span = mixed))
        .collect();

    let creates = branches.iter().enumerate().map(|(i, branch)| {
        let v = &values[i];
        let expr = &branch.tokens;
        // A nested macro (`parallel!`) awaits, so it becomes an async block; any other
        // expression is evaluated as it is, which keeps a task call's type for the access check.
        let value = if branch.nested {
            quote_spanned!(branch.first=> async { #expr })
        } else {
            expr.clone()
        };
        let guard = quote_spanned!(mixed=> __minder_branch_guard);
        quote_spanned! {branch.first=>
            let #v = { let #guard = #par.branch(#i); #value };
        }
    });

    // Every branch value goes through a generic fn whose bounds say what a branch must be: a
    // future of `Result<T, B>` (fail-fast), or any future (settle). The call and its argument
    // both cover the branch as written, so a branch that breaks a bound is reported once, under
    // that branch; the fn returns a boxed future of a plain type, so the polling code below
    // does not report the branch again. Fail-fast blocks then check each later branch's error
    // type `B` against the first branch's `E` (`__minder_same`, which also infers `B` = `E` for
    // an `async` block that ends in `Ok(..)`) and get the conversion to apply to its error.
    let p = quote_spanned!(mixed=> #krate::__private);
    let witness = quote_spanned!(mixed=> __e);
    let helpers = if settle {
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
    let idents = |prefix: &str| -> Vec<syn::Ident> {
        (0..n)
            .map(|i| format_ident!("{}{}", prefix, i, span = mixed))
            .collect()
    };
    let (boxed, convs, futs, slots) = (idents("__b"), idents("__c"), idents("__f"), idents("__r"));
    let bindings: Vec<TokenStream> = branches
        .iter()
        .enumerate()
        .map(|(i, branch)| {
            let (v, b, c) = (&values[i], &boxed[i], &convs[i]);
            let arg = covering(
                branch,
                quote!(::core::convert::identity),
                quote_spanned!(mixed=> #v),
            );
            if settle {
                let boxing = covering(branch, quote!(__minder_branch), arg);
                quote_spanned!(mixed=> let #b = #boxing;)
            } else if i == 0 {
                let call = quote_spanned!(mixed=> &#witness, #arg);
                let boxing = covering(branch, quote!(__minder_first), call);
                quote_spanned!(mixed=> let #b = #boxing;)
            } else {
                let boxing = covering(branch, quote!(__minder_branch), arg);
                let witness = covering(
                    branch,
                    quote!(::core::convert::identity),
                    quote_spanned!(mixed=> &#witness),
                );
                let same = covering(
                    branch,
                    quote!(__minder_same),
                    quote_spanned!(mixed=> &#b, #witness),
                );
                quote_spanned!(mixed=> let #b = #boxing; let #c = #same;)
            }
        })
        .collect();

    // Up to `JOINED` branches, one call of a join written once in the runtime; larger blocks
    // get their poll loop here.
    if n <= JOINED {
        let joined = (0..n).map(|i| {
            let (b, c) = (&boxed[i], &convs[i]);
            if settle {
                quote_spanned!(mixed=> #b)
            } else if i == 0 {
                quote_spanned!(mixed=> #b, #p::keep)
            } else {
                quote_spanned!(mixed=> #b, #c)
            }
        });
        let join = if settle {
            format_ident!("settle{}", n, span = mixed)
        } else {
            format_ident!("try_join{}", n, span = mixed)
        };
        return quote_spanned! {mixed=>
            {
                #first
                let #par = #p::Parallel::enter(#label, #n);
                #(#creates)*
                #access_check
                #helpers
                #(#bindings)*
                #p::#join(#par, #(#joined),*).await
            }
        };
    }

    let polls = (0..n).map(|i| {
        let (f, r, c) = (&futs[i], &slots[i], &convs[i]);
        let err = if i == 0 {
            quote_spanned!(mixed=> __err)
        } else {
            quote_spanned!(mixed=> #c(__err))
        };
        let on_ready = if settle {
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
    let done = if settle {
        quote_spanned!(mixed=> (#(#takes,)*))
    } else {
        quote_spanned!(mixed=> ::core::result::Result::Ok((#(#takes,)*)))
    };
    let indices = 0..n;
    quote_spanned! {mixed=>
        {
            #first
            let #par = #p::Parallel::enter(#label, #n);
            #(#creates)*
            #access_check
            #helpers
            #(#bindings)*
            #(let mut #futs = #p::pin!(#par.poll_in(#indices, #boxed));)*
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

const AWAIT_IN_BRANCH: &str = "`.await` in a branch of `parallel!` runs before the block starts \
    and holds the branch's step scope across a suspension: write the branch as an `async { .. }` \
    block (`async { ctx.sleep(d).await; fetch(1).await }`)";

const PARALLEL_IN_BRANCH: &str = "a `parallel!` inside a branch of `parallel!` awaits before the \
    block starts and holds the branch's step scope across a suspension: make it the whole branch, \
    or write the branch as an `async { .. }` block (`async { let (a, b) = parallel!(..)?; \
    fetch(a).await }`)";

/// The first suspension in a branch that is evaluated (not wrapped in a future) when the block
/// is created: an `.await`, or a `parallel!`, which awaits. It would run under the branch's
/// scope guard, before the block starts, and hold that guard across the suspension. `async`
/// blocks and closures are skipped: their bodies run when polled, in the branch's scope.
/// Returns the offending tokens and the message.
fn suspends(tokens: TokenStream) -> Option<(TokenStream, &'static str)> {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let is =
        |i: usize, c: char| matches!(tts.get(i), Some(TokenTree::Punct(p)) if p.as_char() == c);
    let ident = |i: usize, s: &str| matches!(tts.get(i), Some(TokenTree::Ident(id)) if id == s);
    let mut i = 0;
    while i < tts.len() {
        match &tts[i] {
            TokenTree::Ident(a) if a == "async" => {
                let mut j = i + 1;
                if ident(j, "move") {
                    j += 1;
                }
                match tts.get(j) {
                    // `async { .. }`, `async move { .. }`
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                        i = j + 1;
                        continue;
                    }
                    // `async |x| ..`, `async move || ..`: the parameters, then a block after
                    // a return type, or an expression up to the next `,` or `;`.
                    Some(TokenTree::Punct(p)) if p.as_char() == '|' => {
                        j += 1;
                        while j < tts.len() && !is(j, '|') {
                            j += 1;
                        }
                        j += 1;
                        if is(j, '-') && is(j + 1, '>') {
                            while j < tts.len()
                                && !matches!(&tts[j], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
                            {
                                j += 1;
                            }
                            i = j + 1;
                            continue;
                        }
                        // `f::<A, B>(..)`: a comma inside a turbofish does not end the body.
                        let mut angles = 0usize;
                        while j < tts.len() && !((is(j, ',') && angles == 0) || is(j, ';')) {
                            if is(j, '<') && j >= 2 && is(j - 1, ':') && is(j - 2, ':') {
                                angles += 1;
                            } else if is(j, '>') && angles > 0 && !is(j - 1, '-') {
                                angles -= 1;
                            }
                            j += 1;
                        }
                        i = j;
                        continue;
                    }
                    _ => {}
                }
            }
            TokenTree::Punct(dot) if dot.as_char() == '.' && ident(i + 1, "await") => {
                let found: TokenStream = tts[i..i + 2].iter().cloned().collect();
                return Some((found, AWAIT_IN_BRANCH));
            }
            TokenTree::Ident(name)
                if name == "parallel"
                    && is(i + 1, '!')
                    && matches!(tts.get(i + 2), Some(TokenTree::Group(_))) =>
            {
                let found: TokenStream = tts[i..i + 3].iter().cloned().collect();
                return Some((found, PARALLEL_IN_BRANCH));
            }
            TokenTree::Group(g) => {
                if let Some(found) = suspends(g.stream()) {
                    return Some(found);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `callee(inner)` with the span of the branch's first token on `callee` and of its last token
/// on the parentheses: rustc reports a problem with the call under the whole branch (on stable
/// a span cannot be joined, but a token range can).
fn covering(branch: &Branch, callee: TokenStream, inner: TokenStream) -> TokenStream {
    let callee = respan(&callee, branch.first);
    let mut args = Group::new(Delimiter::Parenthesis, inner);
    args.set_span(branch.last);
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

#[cfg(test)]
mod tests {
    use super::suspends;
    use quote::quote;

    fn found(tokens: proc_macro2::TokenStream) -> Option<String> {
        suspends(tokens).map(|(t, _)| t.to_string())
    }

    #[test]
    fn suspensions_outside_async() {
        assert_eq!(
            found(quote!({
                ctx.sleep(d).await;
                fetch(1)
            }))
            .as_deref(),
            Some(". await")
        );
        assert_eq!(
            found(quote!(fetch(get().await))).as_deref(),
            Some(". await")
        );
        assert!(found(quote!({
            let (a, b) = parallel!(x(), y())?;
            z(a)
        }))
        .is_some());
        assert!(found(quote!(f(async |x| x, g().await))).is_some());
        assert!(found(quote!(f(async |x| h::<A, B>(x), g().await))).is_some());
    }

    #[test]
    fn async_blocks_and_closures() {
        for ok in [
            quote!(async {
                ctx.sleep(d).await;
                fetch(1).await
            }),
            quote!(async move { fetch(1).await }),
            quote!(fetch(1)),
            quote!({ fetch(1) }),
            quote!({
                let f = async { x().await };
                wrap(f)
            }),
            quote!(run(items, async |x| x.await)),
            quote!(run(items, async move |x, y| x.await + y.await)),
            quote!(run(items, async |x| -> u8 { x.await })),
            quote!(run(items, |x| async move { x.await })),
            quote!(run(items, async |x| h::<A, B>(x).await)),
            quote!(run(async { parallel!(a(), b()).await })),
        ] {
            assert_eq!(found(ok.clone()), None, "{ok}");
        }
    }
}
