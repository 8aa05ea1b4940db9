//! Redirect URIs and authorities: registration checks, matching, and the document's URL checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scopegate_core::oauth::redirect;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, requested) = text.split_once('\n').unwrap_or((text, text));
    let _ = redirect::check_redirect_uri(requested);
    // A URI that does not pass registration can never match one that did.
    if redirect::redirect_registered(&[registered.to_string()], requested)
        && registered != requested
    {
        assert!(redirect::check_redirect_uri(requested).is_ok());
        assert!(redirect::check_redirect_uri(registered).is_ok());
    }
    let _ = redirect::display_host(requested);
    let _ = scopegate_core::url::check_origin(text);
    let _ = scopegate_core::url::check_url(text);
    let _ = scopegate_core::url::authority_host(text);
});
