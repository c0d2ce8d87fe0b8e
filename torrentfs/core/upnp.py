"""UPnP IGD port mapping: the SSDP search, the gateway's device description, and
the SOAP calls (``AddPortMapping``, ``DeletePortMapping``, ``GetExternalIPAddress``)
of its WANIPConnection (or WANPPPConnection) service.

1. Multicast :func:`search_request` to 239.255.255.250:1900; each answer
   (:func:`parse_search_response`) gives a ``LOCATION`` URL.
2. GET it; :func:`parse_description` finds the connection service's control URL.
3. POST :func:`soap_request`'s body with its ``SOAPAction`` header to that URL;
   :func:`parse_soap_response` reads the answer or raises the gateway's fault.

Everything a gateway sends is bounded (``MAX_XML``) and refused if it declares a
DOCTYPE or entities (no entity expansion); the XML is read with the standard
library's parser.

Pure: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["SSDP_GROUP", "SSDP_PORT", "MAX_XML", "SERVICE_TYPES", "UpnpError", "Service",
           "search_request", "parse_search_response", "parse_description", "soap_request",
           "parse_soap_response", "add_port_mapping", "delete_port_mapping",
           "get_external_ip_address"]

SSDP_GROUP, SSDP_PORT = "239.255.255.250", 1900
MAX_XML = 64 << 10
IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
SERVICE_TYPES = ("urn:schemas-upnp-org:service:WANIPConnection:2",
                 "urn:schemas-upnp-org:service:WANIPConnection:1",
                 "urn:schemas-upnp-org:service:WANPPPConnection:1")


class UpnpError(Exception):
    """A malformed answer, or the gateway's SOAP fault."""


@dataclass(frozen=True)
class Service:
    service_type: str
    control_url: str


def search_request(st: str = IGD, mx: int = 2) -> bytes:
    return ("M-SEARCH * HTTP/1.1\r\n"
            f"HOST: {SSDP_GROUP}:{SSDP_PORT}\r\n"
            'MAN: "ssdp:discover"\r\n'
            f"MX: {mx}\r\n"
            f"ST: {st}\r\n\r\n").encode()


def parse_search_response(data: bytes) -> str | None:
    """The LOCATION of an SSDP answer (an http URL), or None if it is not one."""
    try:
        text = data[:4096].decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        return None
    lines = text.split("\r\n")
    if not lines or not re.match(r"HTTP/1\.[01] 200\b", lines[0]):
        return None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "location":
            url = value.strip()
            return url if url.startswith("http://") else None
    return None


def _parse_xml(data: bytes) -> ET.Element:
    if len(data) > MAX_XML:
        raise UpnpError(f"XML over {MAX_XML} bytes")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UpnpError("XML with a DOCTYPE or entities refused")
    try:
        return ET.fromstring(data)
    except (ET.ParseError, ValueError) as e:
        raise UpnpError(f"bad XML: {e}") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def parse_description(data: bytes, location: str) -> Service:
    """The WAN connection service of a device description fetched from
    ``location``; its control URL made absolute (against URLBase or location)."""
    root = _parse_xml(data)
    base = location
    for elem in root.iter():
        if _local(elem.tag) == "URLBase" and (elem.text or "").strip():
            base = elem.text.strip()
    found: dict[str, str] = {}
    for elem in root.iter():
        if _local(elem.tag) != "service":
            continue
        st, control = _text(elem, "serviceType"), _text(elem, "controlURL")
        if st in SERVICE_TYPES and control:
            found.setdefault(st, control)
    for st in SERVICE_TYPES:
        if st in found:
            url = urllib.parse.urljoin(base, found[st])
            if not url.startswith("http://"):
                raise UpnpError(f"control URL {url!r} is not http")
            return Service(st, url)
    raise UpnpError("no WANIPConnection or WANPPPConnection service")


def soap_request(service: Service, action: str, args: list[tuple[str, object]]
                 ) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a SOAP call of ``action`` with ``args`` (in order)."""
    params = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in args)
    body = ('<?xml version="1.0"?>\r\n'
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
            f'<s:Body><u:{action} xmlns:u="{service.service_type}">{params}</u:{action}>'
            '</s:Body></s:Envelope>\r\n').encode()
    headers = {"Content-Type": 'text/xml; charset="utf-8"',
               "SOAPAction": f'"{service.service_type}#{action}"'}
    return headers, body


def add_port_mapping(service: Service, *, external_port: int, protocol: str,
                     internal_port: int, internal_client: str, description: str,
                     lease: int) -> tuple[dict[str, str], bytes]:
    return soap_request(service, "AddPortMapping", [
        ("NewRemoteHost", ""), ("NewExternalPort", external_port),
        ("NewProtocol", protocol), ("NewInternalPort", internal_port),
        ("NewInternalClient", internal_client), ("NewEnabled", 1),
        ("NewPortMappingDescription", description), ("NewLeaseDuration", lease)])


def delete_port_mapping(service: Service, *, external_port: int, protocol: str
                        ) -> tuple[dict[str, str], bytes]:
    return soap_request(service, "DeletePortMapping", [
        ("NewRemoteHost", ""), ("NewExternalPort", external_port), ("NewProtocol", protocol)])


def get_external_ip_address(service: Service) -> tuple[dict[str, str], bytes]:
    return soap_request(service, "GetExternalIPAddress", [])


def parse_soap_response(status: int, data: bytes) -> dict[str, str]:
    """The out-arguments of a SOAP answer; UpnpError with the gateway's fault
    (errorCode, errorDescription) if it refused."""
    root = _parse_xml(data) if data.strip() else None
    if root is not None:
        for elem in root.iter():
            if _local(elem.tag) == "UPnPError":
                code = _text(elem, "errorCode") or "?"
                raise UpnpError(f"gateway error {code}: {_text(elem, 'errorDescription') or ''}"
                                .rstrip(": "))
    if status != 200:
        raise UpnpError(f"HTTP status {status}")
    if root is None:
        return {}
    for elem in root.iter():
        if _local(elem.tag) == "Body":
            for response in elem:
                return {_local(c.tag): (c.text or "").strip() for c in response}
    raise UpnpError("no SOAP body")
