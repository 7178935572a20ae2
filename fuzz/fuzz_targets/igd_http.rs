//! The UPnP-IGD HTTP and XML layer on hostile input: the bounded HTTP
//! response parser, the tag extractor, the device-description reader and
//! the SOAP answer reader never panic, and a found control URL stays on
//! the description's host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_transport::portmap::http::{HttpResponse, HttpUrl};
use relay_transport::portmap::{igd, xml};

fuzz_target!(|data: &[u8]| {
    let location = HttpUrl::parse("http://10.1.0.1:5000/rootDesc.xml").expect("valid");
    if let Ok(response) = HttpResponse::parse(data) {
        assert!(response.body.len() <= data.len());
        let _ = igd::soap_result(&response);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(service) = igd::find_service(&location, &text) {
        assert_eq!(service.control.addr.ip(), location.addr.ip());
    }
    let _ = igd::external_ip(&text);
    for element in xml::elements(&text, "service") {
        let _ = xml::text(element, "controlURL");
    }
    let _ = HttpUrl::parse(&text).and_then(|u| u.join(&text));
});
