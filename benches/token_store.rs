//! Memory per cached subject: the heap the token store holds for 100 000 subjects with
//! Salesforce-sized tokens (112-character access token, instance URL, identity URL).
//!
//! Run: `cargo bench --bench token_store`.

#[allow(unsafe_code)]
#[path = "support/counting.rs"]
mod counting;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use oauth_egress::clock::Clock;
use oauth_egress::proxy::forward::Origin;
use oauth_egress::secret::{AccessToken, Secret};
use oauth_egress::token::store::{Fetch, MemoryStore, TokenStore};
use oauth_egress::token::{Token, TokenKey};

const SUBJECTS: usize = 100_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let clock = Clock::default();
        let store = MemoryStore::new(200_000, Duration::from_secs(3600), clock.clone());
        let provider: Arc<str> = "salesforce".into();
        // One org: every token names the same instance, parsed once (as the provider shares it).
        let instance =
            Arc::new(Origin::new(url::Url::parse("https://corp.my.salesforce.com").expect("url")).expect("origin"));
        let before = counting::CURRENT.load(Ordering::Relaxed);
        for i in 0..SUBJECTS {
            // As the proxy does per request: the key, with its own subject string, is built here
            // and dropped after the call; the store keeps its own.
            let key = TokenKey {
                provider: provider.clone(),
                subject: format!("user{i:06}@corp.example.com.sandbox").into(),
                scope: None,
            };
            let clock = clock.clone();
            let instance = Arc::clone(&instance);
            let fetch: Fetch = Box::new(move || {
                async move {
                    let now = clock.now();
                    Ok(Token {
                        access_token: AccessToken::new(&Secret::new(format!("00D5g000004ABCD!AQ0AQ{i:0>90}")))
                            .expect("header value"),
                        token_type: "Bearer".into(),
                        instance_url: Some(Arc::clone(&instance)),
                        scope: Some("api".into()),
                        id: Some(format!("https://login.salesforce.com/id/00D5g000004ABCDEAA/005{i:0>15}")),
                        refresh_at: now + Duration::from_secs(6900),
                        expires_at: now + Duration::from_secs(7200),
                    })
                }
                .boxed()
            });
            store.get_or_fetch(&key, fetch).await.expect("token");
        }
        let held = (counting::CURRENT.load(Ordering::Relaxed) - before) as usize;
        println!(
            "token store: {} subjects cached, {} bytes of heap, {} bytes per subject",
            store.stats().tokens,
            held,
            held / SUBJECTS
        );
    });
}
