//! `#[data]`: serde's derives, reached through minder so the user needs no serde dependency.

use crate::options::{default_crate, parse_opts, Errors};
use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut krate = default_crate();
    for opt in parse_opts(args, "data", &["crate"], &mut errors) {
        if let Some(p) = opt.crate_path(&mut errors) {
            krate = p.into_token_stream();
        }
    }
    let serde_path = format!("{}::__private::serde", krate.to_string().replace(' ', ""));
    let errs = errors.into_tokens();
    quote! {
        #errs
        #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #item
    }
}
