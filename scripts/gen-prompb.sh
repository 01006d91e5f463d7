#!/bin/sh
# Regenerate jobreport/sinks/_prompb/prompb_pb2.py from prompb.proto (the remote-write
# messages). Needs grpcio-tools 1.64 (pip install 'grpcio-tools==1.64.1', in a scratch venv):
# its protoc writes gencode for protobuf 5.26.1 without a runtime-version check, which every
# protobuf runtime from 5.26.1 on loads (setup.cfg: protobuf>=5.26.1,<8). A newer
# grpcio-tools writes gencode that refuses any runtime older than itself.
set -eu
cd "$(dirname "$0")/../jobreport/sinks/_prompb"
python -m grpc_tools.protoc -I. --python_out=. prompb.proto
python -c "import google.protobuf; print('generated for protobuf', google.protobuf.__version__)"
