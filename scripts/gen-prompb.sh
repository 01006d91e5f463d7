#!/bin/sh
# Regenerate jobreport/sinks/_prompb/prompb_pb2.py from prompb.proto (the remote-write
# messages). Needs grpcio-tools (pip install grpcio-tools); the generated module needs only
# the protobuf runtime (setup.cfg: protobuf>=...).
set -eu
cd "$(dirname "$0")/../jobreport/sinks/_prompb"
python -m grpc_tools.protoc -I. --python_out=. prompb.proto
python -c "import google.protobuf; print('generated for protobuf', google.protobuf.__version__)"
