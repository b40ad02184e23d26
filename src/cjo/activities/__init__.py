"""Side effects of journeys: segments, benefits, messaging, risk, profiles and `call` activities."""
