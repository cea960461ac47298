import sys

from homealert_mqtt.cli import main

sys.exit(main())
