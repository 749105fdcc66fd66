// What each role may do: admin manages, relay claims and records, reader reads, emitter emits;
// nobody but create_endpoint and rotate_secret ever shows a secret.

#[pg_test]
fn roles_get_exactly_their_rights() {
    let id = endpoint("roles", "ARRAY['offer.accepted']");
    run("CREATE ROLE app_writer");
    let create = "SELECT webhooks.create_endpoint('https://hooks.test/z', ARRAY['offer.accepted'])";

    assert!(succeeds_as("webhooks_admin", create));
    assert!(succeeds_as("webhooks_admin", &format!("SELECT webhooks.pause_endpoint({id})")));
    assert!(succeeds_as("webhooks_admin", &format!("SELECT webhooks.rotate_secret({id})")));
    assert!(succeeds_as("webhooks_admin", "SELECT webhooks.set_setting('allow_http', 'true')"));
    assert!(succeeds_as("webhooks_admin", "SELECT webhooks.generate_secret()"));
    assert!(!succeeds_as("app_writer", "SELECT webhooks.generate_secret()"));

    assert!(succeeds_as("webhooks_reader", "SELECT * FROM webhooks.endpoint_list"));
    assert!(succeeds_as("webhooks_reader", "SELECT * FROM webhooks.endpoint_status"));
    assert!(succeeds_as("webhooks_reader", "SELECT * FROM webhooks.delivery_log"));
    assert!(succeeds_as("webhooks_reader", "SELECT * FROM webhooks.events_awaiting_fan_out"));
    assert!(succeeds_as("webhooks_admin", "SELECT * FROM webhooks.events_awaiting_fan_out"));
    assert!(succeeds_as("webhooks_reader", "SELECT * FROM webhooks.list_event_types()"));
    assert!(!succeeds_as("webhooks_reader", "SELECT secret FROM webhooks.endpoints"));
    assert!(!succeeds_as("webhooks_reader", create));
    assert!(!succeeds_as("webhooks_reader", &format!("SELECT webhooks.rotate_secret({id})")));

    assert!(!succeeds_as("webhooks_admin", "SELECT secret FROM webhooks.endpoints"));
    assert!(succeeds_as("webhooks_admin", "SELECT id, url, status FROM webhooks.endpoints"));
    for table in ["endpoints", "events", "settings", "deliveries", "attempts", "subscriptions"] {
        assert!(!succeeds_as("webhooks_relay", &format!("SELECT 1 FROM webhooks.{table}")), "relay reads {table}");
    }
    assert!(!succeeds_as("webhooks_relay", &format!("SELECT webhooks.disable_endpoint({id}, 'gone')")));
    assert!(succeeds_as("webhooks_relay", "SELECT * FROM webhooks.claim_deliveries('r', 10, interval '1 minute')"));
    assert!(!succeeds_as("webhooks_relay", create));
    assert!(!succeeds_as("webhooks_relay", "SELECT webhooks.set_setting('allow_http', 'true')"));

    assert!(!succeeds_as("app_writer", "SELECT webhooks.emit('offer.accepted', '{}')"));
    run("CREATE ROLE app_emitter IN ROLE webhooks_emitter");
    assert!(succeeds_as("app_emitter", "SELECT webhooks.emit('offer.accepted', '{}')"));
    assert!(!succeeds_as("app_emitter", "SELECT * FROM webhooks.events"));
    assert!(!succeeds_as("app_writer", "SELECT * FROM webhooks.endpoints"));
    assert!(!succeeds_as("app_writer", "SELECT * FROM webhooks.endpoint_list"));
    assert!(!succeeds_as("app_writer", "SELECT * FROM webhooks.events"));
    assert!(!succeeds_as("app_writer", create));
    assert!(!succeeds_as("app_writer", "INSERT INTO webhooks.events (event_type, data) VALUES ('offer.accepted', '{}')"));
}

#[pg_test]
fn an_application_trigger_emits_for_a_role_without_any_webhooks_rights() {
    endpoint("trig", "ARRAY['application.submitted']");
    run("REVOKE USAGE ON SCHEMA webhooks FROM PUBLIC");
    run("CREATE ROLE clerk");
    run("CREATE TABLE public.apps (id int PRIMARY KEY)");
    run("GRANT INSERT ON public.apps TO clerk");
    // The application's trigger function runs with its owner's rights, as the docs advise.
    run("CREATE FUNCTION public.apps_emit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
           SET search_path = pg_catalog AS $$
         BEGIN PERFORM webhooks.emit('application.submitted', jsonb_build_object('id', NEW.id)); RETURN NEW; END $$");
    run("CREATE TRIGGER apps_emit AFTER INSERT ON public.apps FOR EACH ROW EXECUTE FUNCTION public.apps_emit()");
    assert!(!succeeds_as("clerk", "SELECT webhooks.emit('application.submitted', '{}')"));
    run("SET LOCAL ROLE clerk");
    run("INSERT INTO public.apps VALUES (7)");
    run("RESET ROLE");
    assert_eq!(count("webhooks.events WHERE data ->> 'id' = '7'"), 1);
    assert_eq!(count("webhooks.deliveries"), 1);
}
