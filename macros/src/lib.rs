//! Procedural macros for [minder](https://docs.rs/minder). Use them through `minder`, which
//! re-exports them; this crate is an implementation detail.
//!
//! Each macro lives in its own module and goes parse → check → expand; this file only converts
//! tokens.

use proc_macro::TokenStream;

mod data;
mod options;
mod parallel;
mod process;
mod task;

/// See `minder::task`.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let at = proc_macro::Span::call_site();
    let site = format!("{}:{}:{}", at.file(), at.line(), at.column());
    task::expand(args.into(), item.into(), &site).into()
}

/// See `minder::process`.
#[proc_macro_attribute]
pub fn process(args: TokenStream, item: TokenStream) -> TokenStream {
    process::expand(args.into(), item.into()).into()
}

/// See `minder::data`.
#[proc_macro_attribute]
pub fn data(args: TokenStream, item: TokenStream) -> TokenStream {
    data::expand(args.into(), item.into()).into()
}

/// The implementation of `minder::parallel!`, which passes `$crate` first.
#[doc(hidden)]
#[proc_macro]
pub fn parallel_impl(input: TokenStream) -> TokenStream {
    parallel::expand(input.into()).into()
}
