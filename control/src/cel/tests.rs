use super::*;

fn run(src: &str, self_value: serde_json::Value) -> Result<CelValue, CelError> {
    let p = compile(src, &["self"])?;
    eval(&p, &[("self", to_cel(&self_value))], cost::PER_CALL_LIMIT).0
}

#[test]
fn evaluates_kube_style_rules() {
    let obj =
        serde_json::json!({"replicas": 3, "name": "Web-1", "items": [1, 2, 3], "tags": {"a": "x"}});
    for (src, want) in [
        ("self.replicas <= 5", true),
        ("self.replicas > 5", false),
        ("has(self.name) && !has(self.missing)", true),
        ("self.name.lowerAscii() == 'web-1'", true),
        ("self.name.upperAscii().startsWith('WEB')", true),
        ("self.name.matches('^[A-Za-z]+-[0-9]$')", true),
        ("self.name.split('-').size() == 2", true),
        ("['a','b'].join('-') == 'a-b'", true),
        ("' x '.trim() == 'x' && 'abc'.indexOf('c') == 2 && 'abc'.contains('b') && 'abc'.endsWith('c')", true),
        ("self.items.all(i, i > 0)", true),
        ("self.items.exists(i, i > 2)", true),
        ("self.items.exists_one(i, i == 2)", true),
        ("self.items.map(i, i * 2) == [2, 4, 6]", true),
        ("self.items.filter(i, i > 1).size() == 2", true),
        ("self.items.isSorted() && self.items.sum() == 6 && self.items.min() == 1 && self.items.max() == 3", true),
        ("[3, 1].isSorted()", false),
        ("'a' in self.tags && self.tags.a == 'x'", true),
        ("size(self.items) == 3", true),
    ] {
        assert_eq!(run(src, obj.clone()), Ok(CelValue::Bool(want)), "{src}");
    }
}

#[test]
fn compile_errors_use_kube_wording() {
    let e = compile("self.replicas <", &["self"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("compilation failed: ERROR: <input>:1:"),
        "{e}"
    );
    let e = compile("other.x == 1", &["self"]).unwrap_err().to_string();
    assert_eq!(
        e,
        "compilation failed: ERROR: <input>:1:1: undeclared reference to 'other' (in container '')"
    );
    assert!(compile("self.items.all(i, i > 0)", &["self"]).is_ok());
    assert!(compile("math.abs(-1) == 1", &["self"]).is_ok());
    assert!(compile("type(self) == map", &["self"]).is_ok());
    let p = compile("self == oldSelf", &["self", "oldSelf"]).unwrap();
    assert!(p.uses("oldSelf"));
}

#[test]
fn hostile_expressions_are_bounded() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let e = compile(&deep, &["self"]).unwrap_err().to_string();
    assert!(e.contains("nests more than"), "{e}");
    let chain = vec!["1"; 3000].join(" + ");
    assert!(compile(&chain, &["self"]).is_err());
    let huge = "1 + ".repeat(10_000) + "1";
    assert!(compile(&huge, &["self"]).is_err());
    // n^3 work: stopped by the cost limit, not run to the end.
    let items: Vec<i64> = (0..200).collect();
    let obj = serde_json::json!({ "l": items });
    let started = std::time::Instant::now();
    let r = run(
        "self.l.all(x, self.l.all(y, self.l.all(z, x + y + z >= 0)))",
        obj.clone(),
    );
    assert_eq!(r, Err(CelError::CostExceeded));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // exists swallows errors: the limit is still reported.
    let r = run(
        "self.l.exists(x, self.l.map(y, self.l.map(z, z)).size() < 0) || true",
        obj,
    );
    assert_eq!(r, Err(CelError::CostExceeded));
    // Doubling strings grows the charge with the size.
    let r = run("['x'].map(a, a + a).size() == 1", serde_json::json!({}));
    assert_eq!(r, Ok(CelValue::Bool(true)));
}

#[test]
fn deepest_accepted_expression_evaluates_on_a_small_stack() {
    // The deepest tree compile accepts, evaluated on a thread with tokio's 2 MiB stack.
    let mut src = String::from("self.a");
    let mut depth_ok = None;
    for n in 1..200 {
        src = format!("({src} + 1)");
        if compile(&src, &["self"]).is_err() {
            break;
        }
        depth_ok = Some((n, src.clone()));
    }
    let (n, src) = depth_ok.unwrap();
    assert!(n >= 20, "only {n} levels accepted");
    let chain = vec!["self.a"; 200].join(" + ");
    let mut accepted = vec![src];
    if compile(&chain, &["self"]).is_ok() {
        accepted.push(chain);
    }
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for src in accepted {
                let r = run(&src, serde_json::json!({"a": 1}));
                assert!(matches!(r, Ok(CelValue::Int(_))), "{r:?}");
            }
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn kube_url_ip_cidr_and_quantity_libraries() {
    let obj = serde_json::json!({"endpoint": "https://Example.com:8443/a%20b/c?x=1&x=2&y=z+w",
        "addr": "10.0.0.7", "net": "10.0.0.0/8", "mem": "1536Mi", "cpu": "250m"});
    for (src, want) in [
        ("url(self.endpoint).getScheme() == 'https'", true),
        ("url(self.endpoint).getHost() == 'Example.com:8443'", true),
        ("url(self.endpoint).getHostname() == 'Example.com'", true),
        ("url(self.endpoint).getPort() == '8443'", true),
        ("url(self.endpoint).getEscapedPath() == '/a%20b/c'", true),
        ("url(self.endpoint).getQuery() == {'x': ['1', '2'], 'y': ['z w']}", true),
        ("url('https://[::1]:80/').getHostname() == '::1' && url('https://[::1]/').getPort() == ''", true),
        ("url('/just/a/path').getHost() == ''", true),
        ("isURL('https://ok.example/') && !isURL('not a url') && !isURL('example.com/path') && isURL('/only/a/path')", true),
        ("ip(self.addr).family() == 4 && ip('::1').family() == 6", true),
        ("ip('127.0.0.1').isLoopback() && !ip(self.addr).isLoopback()", true),
        ("ip('0.0.0.0').isUnspecified() && ip('169.254.1.1').isLinkLocalUnicast()", true),
        ("ip('224.0.0.1').isLinkLocalMulticast() && ip(self.addr).isGlobalUnicast()", true),
        ("ip(self.addr) == ip('10.0.0.7') && ip(self.addr) != ip('10.0.0.8')", true),
        ("isIP('1.2.3.4') && !isIP('1.2.3') && !isIP('::ffff:1.2.3.4') && !isIP('fe80::1%eth0')", true),
        ("cidr(self.net).containsIP(self.addr) && cidr(self.net).containsIP(ip('10.1.2.3'))", true),
        ("cidr(self.net).containsIP('11.0.0.1')", false),
        ("cidr(self.net).containsCIDR('10.2.0.0/16') && !cidr('10.2.0.0/16').containsCIDR(self.net)", true),
        ("cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8') && cidr('10.1.2.3/8').ip() == ip('10.1.2.3')", true),
        ("cidr('fd00::/64').prefixLength() == 64 && cidr(self.net).prefixLength() == 8", true),
        ("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33') && !isCIDR('10.0.0.0')", true),
        ("quantity(self.mem).isGreaterThan(quantity('1Gi')) && quantity(self.cpu).isLessThan(quantity('1'))", true),
        ("quantity(self.mem).compareTo(quantity('1536Mi')) == 0 && quantity('1k') == quantity('1000')", true),
        ("quantity(self.cpu).add(quantity('750m')) == quantity('1') && quantity('2').sub(1).asInteger() == 1", true),
        ("quantity(self.cpu).isInteger() || quantity(self.cpu).sign() != 1", false),
        ("quantity('-5').sign() == -1 && quantity(self.cpu).asApproximateFloat() == 0.25", true),
        ("isQuantity('1Gi') && !isQuantity('1GB') && !isQuantity('')", true),
    ] {
        assert_eq!(run(src, obj.clone()), Ok(CelValue::Bool(want)), "{src}");
    }
    for (src, want) in [
        (
            "ip('nope')",
            "IP Address \"nope\" parse error during conversion from string",
        ),
        (
            "cidr('10.0.0.0')",
            "network address parse error during conversion from string",
        ),
        (
            "url('x y')",
            "URL parse error during conversion from string",
        ),
        (
            "quantity('1.5').asInteger()",
            "cannot convert value to integer",
        ),
        (
            "quantity('12 apples')",
            "quantities must match the regular expression",
        ),
    ] {
        let e = run(src, obj.clone()).unwrap_err().to_string();
        assert!(e.contains(want), "{src}: {e}");
    }
}

#[test]
fn kube_format_library() {
    let obj = serde_json::json!({"name": "web-1", "bad": "Web_1", "id": "0f3c9b2e-1d2a-4c5b-8e7f-0123456789ab"});
    for (src, want) in [
        ("format.dns1123Label().validate(self.name) == optional.none()", true),
        ("!format.dns1123Label().validate(self.name).hasValue()", true),
        ("format.named('dns1123Label').value().validate(self.bad).hasValue()", true),
        ("format.named('dns1123Label').value().validate(self.bad).value().size() == 1", true),
        ("format.named('nope').hasValue()", false),
        ("format.named('dns1035Label').value().validate('1abc').hasValue()", true),
        ("!format.dns1123LabelPrefix().validate('web-').hasValue()", true),
        ("!format.qualifiedName().validate('example.com/MyName').hasValue()", true),
        ("!format.labelValue().validate('').hasValue() && format.labelValue().validate('-').hasValue()", true),
        ("!format.uuid().validate(self.id).hasValue() && format.uuid().validate('x').hasValue()", true),
        ("!format.uri().validate('https://a.example/x').hasValue() && format.uri().validate('a b').hasValue()", true),
        ("!format.byte().validate('aGVsbG8=').hasValue() && format.byte().validate('!!').hasValue()", true),
        ("!format.date().validate('2024-02-29').hasValue() && format.date().validate('2023-02-29').hasValue()", true),
        ("!format.datetime().validate('2024-02-29T10:00:00Z').hasValue()", true),
        ("!format.dns1123Subdomain().validate('a.example.com').hasValue() && !format.dns1123SubdomainPrefix().validate('a.b-').hasValue() && !format.dns1035LabelPrefix().validate('ab-').hasValue()", true),
    ] {
        assert_eq!(run(src, obj.clone()), Ok(CelValue::Bool(want)), "{src}");
    }
    assert_eq!(
        run("format.dns1123Label().validate(self.bad).value()[0]", obj.clone()),
        Ok(CelValue::String(Arc::new("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())))
    );
}
