// Shared by the fixture plugins that only need *some* connector. Included with `include!` so
// each fixture stays one small crate: a fixture defines `fn fixture_metadata()` and, unless it
// needs its own behaviour, invokes `stub_connector_impl!()` for a config of anything and a
// send that finishes at once.

pub struct StubConnector;

#[allow(dead_code)]
fn stub_metadata(id: &str) -> plugin_api::ConnectorMetadata {
    plugin_api::ConnectorMetadata {
        id: id.to_owned(),
        target: "fixture".to_owned(),
        name: plugin_api::english("Fixture"),
        description: plugin_api::english("A test fixture."),
        readme: "# Fixture".to_owned(),
        logo: None,
        logo_dark: None,
        config_template: "{}".to_owned(),
        form_items: vec![plugin_api::FormItem::new("option", "Option", plugin_api::FormItemType::Text)],
    }
}

#[allow(unused_macros)]
macro_rules! stub_connector_impl {
    () => {
        impl plugin_api::SmsConnector for StubConnector {
            type Config = serde_json::Value;

            fn metadata() -> plugin_api::ConnectorMetadata {
                fixture_metadata()
            }

            fn from_config(_config: serde_json::Value) -> Result<Self, plugin_api::ConnectorError> {
                Ok(StubConnector)
            }

            fn step(
                &self,
                _message: &plugin_api::SmsMessage,
                _progress: plugin_api::SendProgress,
            ) -> Result<plugin_api::Step, plugin_api::ConnectorError> {
                Ok(plugin_api::Step::done(plugin_api::SendReceipt::new()))
            }
        }
    };
}
