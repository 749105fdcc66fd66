#[pg_test]
fn generated_secrets_are_strong_and_distinct() {
    let a = Spi::get_one::<String>("SELECT webhooks.generate_secret()")
        .unwrap()
        .unwrap();
    let b = Spi::get_one::<String>("SELECT webhooks.generate_secret()")
        .unwrap()
        .unwrap();
    assert!(a.starts_with("whsec_") && a.len() == 70, "{a}");
    assert_ne!(a, b);
}
