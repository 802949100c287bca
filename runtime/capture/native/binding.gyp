{
  "targets": [
    {
      "target_name": "sluice_capture",
      "sources": ["capture.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
