// Shared by the fixture plugins that only need *some* connector: a config of `{}` and a send
// that finishes at once. Included with `include!` so each fixture stays one small crate.

pub struct StubConnector;

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
