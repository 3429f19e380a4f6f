//! `#[task]`: parse the options and the function, check the signature, expand into a call
//! function, a hidden `TaskMeta` type and compile-time assertions on the user's types.

use crate::options::{
    bad_task_name, default_crate, is_prelude_macro, not_a_fn, parse_opts, respan, source_text,
    Errors,
};
use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, FnArg, Ident, Pat, ReturnType, Signature, Type, Visibility};

/// A task function as written: its body is kept as tokens (nothing here needs to look inside
/// it, and rustc reports any error in it where it is).
struct TaskFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    block: proc_macro2::Group,
}

impl Parse for TaskFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let block = input.step(|cursor| match cursor.token_tree() {
            Some((proc_macro2::TokenTree::Group(g), rest))
                if g.delimiter() == proc_macro2::Delimiter::Brace =>
            {
                Ok((g, rest))
            }
            _ => Err(cursor.error("expected the function body")),
        })?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function body"));
        }
        Ok(TaskFn {
            attrs,
            vis,
            sig,
            block,
        })
    }
}

const OPTIONS: &[&str] = &[
    "retries", "timeout", "backoff", "reads", "writes", "name", "crate",
];

struct TaskOpts {
    krate: TokenStream,
    name: Option<String>,
    retries: u32,
    timeout_ms: Option<u64>,
    backoff_ms: u64,
    reads: Vec<String>,
    writes: Vec<String>,
}

fn parse(args: TokenStream, errors: &mut Errors) -> TaskOpts {
    let mut opts = TaskOpts {
        krate: default_crate(),
        name: None,
        retries: 0,
        timeout_ms: None,
        backoff_ms: 100,
        reads: Vec::new(),
        writes: Vec::new(),
    };
    for opt in parse_opts(args, "task", OPTIONS, errors) {
        match opt.key.to_string().as_str() {
            "retries" => opts.retries = opt.u32(errors).unwrap_or(0),
            "timeout" => opts.timeout_ms = opt.duration_millis(errors),
            "backoff" => opts.backoff_ms = opt.duration_millis(errors).unwrap_or(100),
            "reads" => opts.reads = resource_names(&opt.paths(errors)),
            "writes" => opts.writes = resource_names(&opt.paths(errors)),
            "name" => {
                if let Some(lit) = opt.str("\"fetch-page\"", errors) {
                    let value = lit.value();
                    match bad_task_name(&value) {
                        None => opts.name = Some(value),
                        Some(why) => errors.at(lit.span(), why),
                    }
                }
            }
            "crate" => {
                if let Some(p) = opt.crate_path(errors) {
                    opts.krate = p.into_token_stream();
                }
            }
            _ => unreachable!("parse_opts keeps known options only"),
        }
    }
    opts
}

fn resource_names(paths: &[syn::Path]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_token_stream().to_string().replace(' ', ""))
        .collect()
}

/// Types that are serde whatever the crate defines (spelled as std and minder spell them): no
/// assertion is written for them, which keeps the expansion small.
fn surely_journaled(ty: &Type) -> bool {
    const PLAIN: &[&str] = &[
        "bool",
        "char",
        "u8",
        "u16",
        "u32",
        "u64",
        "u128",
        "usize",
        "i8",
        "i16",
        "i32",
        "i64",
        "i128",
        "isize",
        "f32",
        "f64",
        "String",
        "TaskError",
        "PathBuf",
    ];
    match ty {
        Type::Tuple(t) => t.elems.iter().all(surely_journaled),
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let seg = &p.path.segments[0];
            let name = seg.ident.to_string();
            match &seg.arguments {
                syn::PathArguments::None => PLAIN.contains(&name.as_str()),
                syn::PathArguments::AngleBracketed(args)
                    if ["Vec", "Option", "BTreeMap", "BTreeSet"].contains(&name.as_str()) =>
                {
                    args.args
                        .iter()
                        .all(|a| matches!(a, syn::GenericArgument::Type(t) if surely_journaled(t)))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// `T` and `E` of a return type written `Result<T, E>` (or `T` of `Result<T>`), to assert them
/// journaled under their own tokens; nothing for any other spelling.
fn result_args(ret: &Type) -> Vec<Type> {
    let Type::Path(p) = ret else {
        return Vec::new();
    };
    let Some(last) = p.path.segments.last() else {
        return Vec::new();
    };
    if last.ident != "Result" {
        return Vec::new();
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Finds the first reference or lifetime inside a type.
struct Borrows(Option<TokenStream>);

impl Visit<'_> for Borrows {
    fn visit_type_reference(&mut self, r: &syn::TypeReference) {
        self.0.get_or_insert_with(|| r.to_token_stream());
    }
    fn visit_lifetime(&mut self, l: &syn::Lifetime) {
        self.0.get_or_insert_with(|| l.to_token_stream());
    }
}

fn owned_hint(ty: &Type) -> String {
    if let Type::Reference(r) = ty {
        return match &*r.elem {
            Type::Path(p) if p.path.is_ident("str") => "take `String` instead".into(),
            Type::Path(p) if p.path.is_ident("Path") => "take `PathBuf` instead".into(),
            Type::Slice(s) => format!("take `Vec<{}>` instead", source_text(&s.elem)),
            other => format!("take `{}` by value instead", source_text(other)),
        };
    }
    "take an owned type instead (`String` for `&str`, `Vec<T>` for `&[T]`)".into()
}

/// The parameters of a task: the journaled ones, and its state (`#[state] pat: &T`: the
/// pattern and `T`).
#[derive(Default)]
struct Params {
    journaled: Vec<(Pat, Type)>,
    state: Vec<(Pat, Type)>,
}

fn is_state_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("state")
}

/// Checks a `#[state]` parameter's type, `&T`; returns `T`.
fn check_state(pt: &syn::PatType, errors: &mut Errors) -> Option<Type> {
    for attr in pt.attrs.iter().filter(|a| is_state_attr(a)) {
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            errors.under(
                attr,
                "`#[state]` takes no arguments: write `#[state] name: &Type`",
            );
            return None;
        }
    }
    let Type::Reference(r) = &*pt.ty else {
        errors.under(
            &pt.ty,
            format!(
                "a `#[state]` parameter is a shared reference to the registered value: write `&{}`",
                source_text(&pt.ty)
            ),
        );
        return None;
    };
    if r.mutability.is_some() {
        errors.under(
            &pt.ty,
            "task state is shared by every task running at once, so it cannot be borrowed \
             mutably: take `&T`, with a `Mutex` inside `T` for what changes",
        );
        return None;
    }
    let elem = &*r.elem;
    let mut borrows = Borrows(None);
    borrows.visit_type(elem);
    if let Some(borrow) = borrows.0 {
        errors.under(
            borrow,
            format!(
                "task state lives as long as its runner, so `{}` must own its data (`'static`)",
                source_text(elem)
            ),
        );
        return None;
    }
    match elem {
        Type::ImplTrait(_) | Type::TraitObject(_) => {
            let text = source_text(elem);
            let name = text.trim_start_matches("impl ").trim_start_matches("dyn ");
            errors.under(
                elem,
                format!(
                    "task state is found by its type, which must be sized and concrete: register \
                     an `Arc<dyn {name}>` on the runner and take `&Arc<dyn {name}>`"
                ),
            );
            None
        }
        _ => Some(elem.clone()),
    }
}

/// Checks the signature; returns the parameters when usable.
fn check(func: &TaskFn, errors: &mut Errors) -> Params {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            "a `#[task]` must be an `async fn`: write `async fn` (a task is awaited, and its result journaled)",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.under(
            &sig.generics,
            "a `#[task]` cannot be generic: its inputs and output are journaled, so they need concrete types",
        );
    }
    if let ReturnType::Default = sig.output {
        errors.at(
            sig.ident.span(),
            "a `#[task]` must return `Result<T, E>`: add `-> Result<T, TaskError>`",
        );
    }
    let mut params = Params::default();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => errors.under(
                r,
                "a `#[task]` cannot take `self`: make it a free `async fn` and pass the data it needs as owned arguments",
            ),
            FnArg::Typed(pt) if pt.attrs.iter().any(is_state_attr) => {
                if let Some(ty) = check_state(pt, errors) {
                    params.state.push(((*pt.pat).clone(), ty));
                }
            }
            FnArg::Typed(pt) => {
                let mut borrows = Borrows(None);
                borrows.visit_type(&pt.ty);
                if let Some(borrow) = borrows.0 {
                    errors.under(
                        borrow,
                        format!(
                            "task inputs are journaled and must be owned, but `{}` borrows: {}",
                            source_text(&pt.ty),
                            owned_hint(&pt.ty)
                        ),
                    );
                } else if let Type::ImplTrait(_) = &*pt.ty {
                    errors.under(
                        &pt.ty,
                        "task inputs are journaled and need a concrete type, not `impl Trait`",
                    );
                } else {
                    params.journaled.push(((*pt.pat).clone(), (*pt.ty).clone()));
                }
            }
        }
    }
    params
}

/// `site` tells tasks apart within a crate (see `unique`).
pub(crate) fn expand(args: TokenStream, item: TokenStream, site: &str) -> TokenStream {
    let func: TaskFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = not_a_fn(&item, "task");
            return quote!(#e #item);
        }
    };
    let mut errors = Errors::default();
    let opts = parse(args, &mut errors);
    let params = check(&func, &mut errors);
    if !errors.is_empty() {
        // Re-emit the function so callers do not cascade into "cannot find function" (without
        // its `#[state]` marks, which mean nothing to rustc).
        let errs = errors.into_tokens();
        let TaskFn {
            attrs,
            vis,
            mut sig,
            block,
        } = func;
        for arg in sig.inputs.iter_mut() {
            if let FnArg::Typed(pt) = arg {
                pt.attrs.retain(|a| !is_state_attr(a));
            }
        }
        return quote!(#errs #(#attrs)* #vis #sig #block);
    }
    generate(&func, &opts, &params, &unique(site))
}

fn generate(func: &TaskFn, opts: &TaskOpts, all: &Params, unique: &str) -> TokenStream {
    let params = &all.journaled;
    let krate = &opts.krate;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| ident.unraw().to_string());
    // The task's type: a plain hidden struct (its name shows in `parallel!`'s errors).
    let meta = format_ident!("__minder_task_{}", ident.unraw());
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let ret = match &func.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => unreachable!("checked"),
    };
    let outer_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| {
            a.path().is_ident("doc")
                || a.path().is_ident("allow")
                || a.path().is_ident("deprecated")
        })
        .collect();

    let arg_idents: Vec<Ident> = params
        .iter()
        .enumerate()
        .map(|(i, (pat, _))| match pat {
            Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
            _ => format_ident!("arg{}", i),
        })
        .collect();
    let arg_types: Vec<&Type> = params.iter().map(|(_, t)| t).collect();

    let timeout = opts.timeout_ms.unwrap_or(0);
    let retries = opts.retries;
    let backoff = opts.backoff_ms;
    let reads = &opts.reads;
    let writes = &opts.writes;

    // `TaskMeta` bounds `Args: Journaled`, and rustc reports a failure there in terms of serde.
    // The assertions below say it in minder's terms, under each offending type; the tuple gets
    // the user's span too, so nothing points at the attribute. Types that are serde whatever
    // the crate says (`String`, `u64`, ..) get no assertion, to keep the expansion small.
    let assertions = arg_types
        .iter()
        .filter(|ty| !surely_journaled(ty))
        .map(|ty| {
            quote_spanned! {ty.span()=> #krate::__private::assert_journaled::<#ty>(); }
        });
    // The same for the output: `Return: TaskReturn` fails in serde's terms (it suggests
    // `#[derive(serde::Serialize)]`), so the success and error types of a `Result<T, E>` as
    // written are asserted under themselves too, with minder's message (`#[data]`).
    let outputs = result_args(&ret)
        .into_iter()
        .filter(|ty| !surely_journaled(ty))
        .map(|ty| {
            quote_spanned! {ty.span()=> #krate::__private::assert_journaled::<#ty>(); }
        });
    let args_tuple = match arg_types.as_slice() {
        [ty] => quote_spanned!(ty.span()=> (#ty,)),
        _ => quote_spanned!(func.sig.paren_token.span.join()=> (#(#arg_types,)*)),
    };

    let k = quote!(#krate::__private);
    // The body is a closure without captures (a `fn` pointer): the user's block in an
    // `async move` block over the user's own parameter patterns. `args` is invisible to the
    // user's code (mixed-site hygiene).
    let args = quote_spanned!(Span::mixed_site()=> args);
    let pats = params.iter().map(|(pat, _)| pat);
    // State is looked up before the body starts (a missing value stops the run before the body
    // runs), each value bound to the user's pattern inside the body as `&T`. The lookup is
    // under the user's type, so a type that cannot be state is reported there.
    let states = quote_spanned!(Span::mixed_site()=> states);
    let states_pat = if all.state.is_empty() {
        quote!(_)
    } else {
        states.clone()
    };
    let held: Vec<Ident> = (0..all.state.len())
        .map(|i| Ident::new(&format!("state{i}"), Span::mixed_site()))
        .collect();
    let lookups = all.state.iter().zip(&held).map(|((_, ty), held)| {
        let get = respan(&quote!(#k::state::<#ty>), ty.span());
        quote!(let #held = #get(#states)?;)
    });
    let state_bindings = all
        .state
        .iter()
        .zip(&held)
        .map(|((pat, ty), held)| quote!(let #pat: &#ty = &*#held;));
    // The user's statements go straight into the `async move` block: nested as a block, a
    // one-expression body would warn `unused_braces`. A body with inner attributes stays a block.
    let block = &func.block;
    let mut head = block.stream().into_iter();
    let inner_attrs = matches!(
        (head.next(), head.next()),
        (Some(proc_macro2::TokenTree::Punct(h)), Some(proc_macro2::TokenTree::Punct(b)))
            if h.as_char() == '#' && b.as_char() == '!'
    );
    let body = if inner_attrs {
        quote!(#block)
    } else {
        block.stream()
    };
    // `task_body` requires the body's future to be `Send`; when it is not (a non-`Send` value
    // held across an `.await`), rustc reports it at this call: spanned at the user's `async`,
    // with rustc's notes under the value and the `.await`.
    let async_span = func
        .sig
        .asyncness
        .map(|a| a.span)
        .unwrap_or(func.sig.fn_token.span);
    let task_body = respan(&quote!(#k::task_body), async_span);
    let mut async_block = Group::new(
        Delimiter::Parenthesis,
        quote_spanned! {async_span=>
            async move {
                let (#(#pats,)*) = #args;
                #(#state_bindings)*
                #body
            }
        },
    );
    async_block.set_span(async_span);
    let body_attrs = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("allow") || a.path().is_ident("expect"));
    // The function users call carries the user's span, so rustc's lints on it (`dead_code` for a
    // task nothing calls) reach the user as they would without the attribute.
    // `#[track_caller]`: the step learns where the process called it, which places it on
    // the process's graph.
    let call_fn = quote_spanned! {func.sig.fn_token.span=>
        #[track_caller]
        #vis fn #ident(#(#arg_idents: #arg_types),*) -> #k::TaskCall<#meta> {
            // Checked here, under the user's types, with minder's own message.
            #(#assertions)*
            #(#outputs)*
            #k::TaskCall::<#meta>::new(
                (#(#arg_idents,)*),
                #k::TaskDef::new(#name, ::core::module_path!(), ::core::file!(), #line, #retries, #backoff, #timeout),
                #(#body_attrs)*
                |#args, #states_pat| {
                    #(#lookups)*
                    ::core::result::Result::Ok(#task_body #async_block)
                },
            )
        }
    };

    // Declared access only when there is some: the trait's default is "none".
    let declared = !reads.is_empty() || !writes.is_empty();
    let access = declared.then(|| {
        quote! {
            const ACCESS: &'static #k::AccessDef = &#k::AccessDef {
                reads: &[#(#reads),*],
                writes: &[#(#writes),*],
            };
        }
    });
    // For `#[process]`'s check at `cargo check`, which reads a task's access from the path of
    // a call (see `process::access`): a macro of the task's own name (the macro namespace, so
    // it clashes with no module, type or function) that expands to the declared access, given
    // the path to minder's `__private`. It is `#[macro_export]`ed (crate root, under a name
    // unique in the crate) only when the task is `pub`, so it can be re-exported with it.
    // A task named like a macro every module sees (`write`, `test`) gets none: it would shadow
    // that macro; `#[process]` leaves calls of such names to `parallel!`'s check at `cargo
    // build`. Invoked other than by a probe, the macro says what it is.
    let probe = (declared && !is_prelude_macro(&ident.to_string())).then(|| {
        let hidden = format_ident!("__minder_access_{}_{}", ident.unraw(), unique);
        let export = matches!(vis, Visibility::Public(_)).then(|| quote!(#[macro_export]));
        let misuse = format!(
            "`{0}!` here is the hidden access check of the task `{0}` (minder): import the \
             macro you meant under another name, or rename the task",
            ident.unraw()
        );
        quote! {
            #[doc(hidden)]
            #export
            macro_rules! #hidden {
                (@__minder_access $($k:tt)*) => {
                    $($k)*::AccessDef { reads: &[#(#reads),*], writes: &[#(#writes),*] }
                };
                ($($other:tt)*) => {
                    ::core::compile_error!(#misuse)
                };
            }
            #[doc(hidden)]
            #[allow(unused_imports)]
            #vis use #hidden as #ident;
        }
    });

    quote! {
        #(#outer_attrs)*
        #call_fn

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #meta;

        #probe

        impl #k::TaskMeta for #meta {
            type Args = #args_tuple;
            type Return = #ret;
            #access
        }
    }
}

/// A short hash of where a task is written (its file, line and column): two tasks of one name
/// in different modules get different hidden macro names at the crate root.
fn unique(site: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    site.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}
