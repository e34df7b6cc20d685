"""An OTLP/HTTP metrics receiver for execgate's tests.

Decodes every POST to /v1/metrics with the OpenTelemetry project's own
protobuf definitions (the opentelemetry-proto package from PyPI), appends one
JSON line per data point to the file named by its first argument, and
answers as a collector does. Prints the port it listens on (loopback only).
Anything it cannot decode is answered 400 and recorded as an error line.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

OUT = sys.argv[1]


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def record(lines):
    with open(OUT, "a", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        if self.path != "/v1/metrics" or content_type != "application/x-protobuf":
            record([{"error": f"unexpected {self.path} {content_type}"}])
            self.send_response(400)
            self.end_headers()
            return
        request = ExportMetricsServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as error:  # a malformed request is the test's failure
            record([{"error": f"undecodable: {error}"}])
            self.send_response(400)
            self.end_headers()
            return
        points = []
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        points.append(
                            {
                                "service": resource.get("service.name"),
                                "scope": scope_metrics.scope.name,
                                "name": metric.name,
                                "kind": kind,
                                "monotonic": getattr(
                                    getattr(metric, kind), "is_monotonic", None
                                ),
                                "attributes": attributes(point.attributes),
                                "value": any_value_of_point(point),
                            }
                        )
        record(points)
        response = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    def log_message(self, *args):
        pass


def any_value_of_point(point):
    kind = point.WhichOneof("value")
    return getattr(point, kind) if kind else None


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
