const io = require('socket.io-client');

function connectWebSocket(token, companyId) {
  const socket = io('https://ai-admin.app/marketplace', {
    transportOptions: {
      polling: {
        extraHeaders: {
          'x-auth-token': token
        }
      }
    }
  });

  socket.on('connect', () => {
    console.log('Connected to WebSocket');
    socket.emit('authenticate', { token, companyId });
  });

  socket.on('authenticated', (data) => {
    console.log('Authenticated:', data);
    socket.emit('getQR', { companyId });
  });

  socket.on('qr', (data) => {
    console.log('New QR code received');
    // Отобразить QR-код пользователю
  });

  socket.on('whatsapp.connected', (data) => {
    console.log('WhatsApp connected!', data);
    // Перенаправить на страницу успеха
  });

  socket.on('error', (error) => {
    console.error('Socket error:', error);
  });
}
