//! Shared by the plugin-call benchmarks. Each benchmark links one plugin crate only: two
//! plugins in one executable would export the same root module symbol twice.

use std::hint::black_box;

use connector_host::plugins::loader::PluginLoader;
use criterion::Criterion;
use e2e_tests::plugin_file;
use plugin_api::{SendProgress, SmsConnector, SmsMessage, TemplateType};
use serde_json::json;

pub fn message() -> SmsMessage {
    SmsMessage::new(
        "+12015550123".to_owned(),
        TemplateType::SignIn,
        json!({"code": "123456", "locale": "en"})
            .as_object()
            .cloned()
            .unwrap(),
    )
}

pub fn compare<Connector: SmsConnector>(
    criterion: &mut Criterion,
    name: &str,
    library: &str,
    config: serde_json::Value,
) {
    let scratch = tempfile::tempdir().unwrap();
    let loader = PluginLoader::new(scratch.path().join("copies"), None).unwrap();
    let plugin = loader.load(&plugin_file(library)).unwrap();
    let connector_host::plugins::module::PluginInstance::InProcess(through_library) =
        plugin.module.instantiate(&config).unwrap()
    else {
        panic!("the loader loads in this process unless told otherwise");
    };
    let (_, direct) = plugin_api::validate_config::<Connector>(config).unwrap();
    let message = message();

    let mut group = criterion.benchmark_group(name);
    group.bench_function("direct", |bencher| {
        bencher.iter(|| {
            direct
                .step(black_box(&message), SendProgress::start())
                .unwrap()
        })
    });
    group.bench_function("through_so", |bencher| {
        bencher.iter(|| {
            through_library
                .step(black_box(&message), SendProgress::start())
                .unwrap()
        })
    });
    group.finish();
}

pub fn templates() -> serde_json::Value {
    json!([
        {"usageType": "Generic", "content": "Your verification code is {{code}}. The code will remain active for 10 minutes."},
        {"usageType": "SignIn", "content": "Your sign-in code is {{code}}. The code will remain active for 10 minutes."}
    ])
}
