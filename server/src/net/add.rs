//! The seed's JSON request/response service (`/ws/add`), in its exact shape so the seed's own
//! Go client works unchanged: `{"A":3,"B":9}` → `{"Sum":12}`. Refusals keep the connection
//! open and answer `{"Error":"…","Code":"…"}` (`bad_json`, `invalid_message`, `overflow`).
//! The chat socket offers the same service as the `add` message with a request id.

use super::outbound::Queued;
use super::{Close, Endpoint, Outbound};
use serde::Deserialize;
use tungstenite::Utf8Bytes;

#[derive(Debug, Default)]
pub(crate) struct Add;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Args {
    a: i64,
    b: i64,
}

impl Endpoint for Add {
    async fn on_text(&mut self, text: Utf8Bytes, out: &Outbound) -> Result<(), Close> {
        let reply = match serde_json::from_str::<Args>(text.as_str()) {
            Ok(Args { a, b }) => match a.checked_add(b) {
                Some(sum) => serde_json::json!({ "Sum": sum }),
                None => serde_json::json!({
                    "Error": format!("{a} + {b} does not fit in a 64-bit integer"),
                    "Code": "overflow",
                }),
            },
            Err(err) => {
                let code = if err.is_data() { "invalid_message" } else { "bad_json" };
                serde_json::json!({ "Error": err.to_string(), "Code": code })
            }
        };
        out.push_frame(Queued::Text(reply.to_string().into()));
        Ok(())
    }
}
