"""Push providers (APNs, FCM, Web Push) behind one contract; see base.py."""
