"""core/upnp.py: SSDP, the device description, SOAP bodies and answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core import upnp

DESC = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceList><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<controlURL>/ctl/IPConn</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>"""


def test_search():
    req = upnp.search_request()
    assert req.startswith(b"M-SEARCH * HTTP/1.1\r\n") and b'MAN: "ssdp:discover"' in req
    assert req.endswith(b"\r\n\r\n")
    answer = b"HTTP/1.1 200 OK\r\nST: x\r\nLocation: http://10.0.0.1:5000/rootDesc.xml\r\n\r\n"
    assert upnp.parse_search_response(answer) == "http://10.0.0.1:5000/rootDesc.xml"
    assert upnp.parse_search_response(b"NOTIFY * HTTP/1.1\r\nLOCATION: http://x/\r\n") is None
    assert upnp.parse_search_response(b"HTTP/1.1 200 OK\r\nLOCATION: file:///etc\r\n") is None


def test_description():
    s = upnp.parse_description(DESC, "http://10.0.0.1:5000/rootDesc.xml")
    assert s == upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1",
                             "http://10.0.0.1:5000/ctl/IPConn")
    with pytest.raises(upnp.UpnpError, match="no WANIP"):
        upnp.parse_description(b"<root/>", "http://x/")
    with pytest.raises(upnp.UpnpError, match="DOCTYPE"):
        upnp.parse_description(b'<!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>', "http://x/")
    with pytest.raises(upnp.UpnpError, match="over"):
        upnp.parse_description(b"<r>" + b" " * upnp.MAX_XML + b"</r>", "http://x/")


def test_soap():
    s = upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1", "http://x/ctl")
    headers, body = upnp.add_port_mapping(s, external_port=6881, protocol="TCP",
                                          internal_port=6881, internal_client="10.0.0.2",
                                          description="a<b", lease=3600)
    assert headers["SOAPAction"] == '"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"'
    assert b"<NewExternalPort>6881</NewExternalPort>" in body and b"a&lt;b" in body
    ok = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
          b'<u:GetExternalIPAddressResponse xmlns:u="x"><NewExternalIPAddress>5.6.7.8'
          b'</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>')
    assert upnp.parse_soap_response(200, ok) == {"NewExternalIPAddress": "5.6.7.8"}
    fault = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
             b'<s:Fault><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
             b'<errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported'
             b'</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>')
    with pytest.raises(upnp.UpnpError, match="725"):
        upnp.parse_soap_response(500, fault)
    with pytest.raises(upnp.UpnpError, match="HTTP status 404"):
        upnp.parse_soap_response(404, b"")


@given(st.binary(max_size=300))
def test_any_bytes_fail_cleanly(data):
    for fn in (lambda: upnp.parse_description(data, "http://x/"),
               lambda: upnp.parse_soap_response(200, data)):
        try:
            fn()
        except upnp.UpnpError:
            pass
    upnp.parse_search_response(data)
